/**
 * A minimal V8 inspector (Chrome DevTools Protocol) client for the bench:
 * force a full GC, read `Deno.memoryUsage()` inside the server, and write a
 * heap snapshot to a file. The server must run with
 * `--inspect=<host>:<port>`: the bench's servers on 127.0.0.1, the
 * reliability suite's nodes there or in a network namespace of its own.
 *
 * @module
 */

/** `Deno.memoryUsage()` of the inspected process, bytes. */
export interface MemoryUsage {
  heapUsed: number;
  heapTotal: number;
  external: number;
  rss: number;
}

/** One connected inspector session. */
export class Inspector {
  #ws: WebSocket;
  #nextId = 1;
  #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #onEvent: ((method: string, params: Record<string, unknown>) => void) | undefined;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e: MessageEvent) => {
      const msg = JSON.parse(e.data as string) as {
        id?: number;
        result?: unknown;
        error?: { message: string };
        method?: string;
        params?: Record<string, unknown>;
      };
      if (msg.id !== undefined) {
        const w = this.#waiting.get(msg.id);
        this.#waiting.delete(msg.id);
        if (msg.error !== undefined) w?.reject(new Error(msg.error.message));
        else w?.resolve(msg.result);
      } else if (msg.method !== undefined) {
        this.#onEvent?.(msg.method, msg.params ?? {});
      }
    };
  }

  /** Connect to the first target of the inspector listening on `host`:`port`. */
  static async connect(port: number, timeoutMs = 20_000, host = "127.0.0.1"): Promise<Inspector> {
    const deadline = Date.now() + timeoutMs;
    let url: string | undefined;
    while (url === undefined) {
      try {
        const res = await fetch(`http://${host}:${port}/json/list`);
        const list = await res.json() as { webSocketDebuggerUrl: string }[];
        url = list[0]?.webSocketDebuggerUrl;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`Cannot open inspector ${url}`));
    });
    return new Inspector(ws);
  }

  /** Send one command and wait for its result (at most `timeoutMs`). */
  call(
    method: string,
    params: Record<string, unknown> = {},
    timeoutMs = 120_000,
  ): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`Inspector ${method} timed out`));
      }, timeoutMs);
      this.#waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Full GC (twice, so weak callbacks and finalizers run), then the server's heap figures. */
  async memory(): Promise<MemoryUsage> {
    await this.call("HeapProfiler.collectGarbage");
    await this.call("HeapProfiler.collectGarbage");
    return await this.memoryNow();
  }

  /** The server's heap figures as they are (no GC first). */
  async memoryNow(): Promise<MemoryUsage> {
    const out = await this.call("Runtime.evaluate", {
      expression: "JSON.stringify(Deno.memoryUsage())",
      returnByValue: true,
    }) as { result: { value: string } };
    return JSON.parse(out.result.value);
  }

  /** Write a heap snapshot of the server to `path`. */
  async snapshot(path: string): Promise<void> {
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    const enc = new TextEncoder();
    let chain = Promise.resolve();
    this.#onEvent = (method, params) => {
      if (method !== "HeapProfiler.addHeapSnapshotChunk") return;
      const bytes = enc.encode(String(params["chunk"]));
      chain = chain.then(async () => {
        let off = 0;
        while (off < bytes.length) off += await file.write(bytes.subarray(off));
      });
    };
    try {
      await this.call("HeapProfiler.enable");
      await this.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false }, 300_000);
      await chain;
    } finally {
      this.#onEvent = undefined;
      file.close();
    }
  }

  /** Close the inspector connection. */
  close(): void {
    this.#ws.close();
  }
}
