/**
 * A TCP proxy on 127.0.0.1 for store fault tests: it forwards to a target
 * until {@linkcode TcpProxy.freeze}, after which it moves no byte either
 * way and answers nothing, but closes nothing either, as a host that
 * vanished from the network looks to its peers (no reset, no FIN).
 * {@linkcode TcpProxy.cut} closes every connection at once instead, and
 * {@linkcode TcpProxy.freezeAfterSending} freezes right after a given
 * request reached the server (its answer is lost).
 */

interface Link {
  readonly client: Deno.TcpConn;
  readonly upstream: Promise<Deno.TcpConn>;
}

/** A forwarding proxy; `await using` closes it and every connection. */
export class TcpProxy implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #target: Deno.ConnectOptions;
  readonly #links = new Set<Link>();
  readonly #pumps = new Set<Promise<void>>();
  #thawed: PromiseWithResolvers<void> | undefined;
  /** Bytes whose sending to the server freezes the proxy (once). */
  #trigger: Uint8Array | undefined;
  #accepting: Promise<void>;

  private constructor(target: Deno.ConnectOptions) {
    this.#target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  /** Listen on a free loopback port, forwarding to `target`. */
  static start(target: Deno.ConnectOptions): TcpProxy {
    return new TcpProxy(target);
  }

  /** The port the proxy listens on. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Connections accepted so far and not closed. */
  get connections(): number {
    return this.#links.size;
  }

  /** Stop moving bytes, on open and new connections, until {@linkcode thaw}. */
  freeze(): void {
    this.#thawed ??= Promise.withResolvers();
  }

  /**
   * Freeze as soon as a client sends `text` (e.g. Postgres's `commit`): that
   * chunk still reaches the server, which acts on it, but its answer and
   * everything after are held until {@linkcode thaw}. Once.
   */
  freezeAfterSending(text: string): void {
    this.#trigger = new TextEncoder().encode(text);
  }

  /** Move bytes again. */
  thaw(): void {
    this.#thawed?.resolve();
    this.#thawed = undefined;
  }

  /** Close every open connection, both sides (the accept loop goes on). */
  cut(): void {
    for (const link of this.#links) this.#drop(link);
  }

  async #accept(): Promise<void> {
    for await (const client of this.#listener) {
      const link: Link = { client, upstream: Deno.connect(this.#target) };
      this.#links.add(link);
      link.upstream.catch(() => this.#drop(link));
      this.#track(this.#pump(link, client, link.upstream, true));
      this.#track(this.#pump(link, link.upstream, Promise.resolve(client), false));
    }
  }

  #track(pump: Promise<void>): void {
    this.#pumps.add(pump);
    pump.finally(() => this.#pumps.delete(pump));
  }

  async #pump(
    link: Link,
    from: Deno.TcpConn | Promise<Deno.TcpConn>,
    to: Promise<Deno.TcpConn>,
    toServer: boolean,
  ) {
    const buffer = new Uint8Array(64 * 1024);
    try {
      const source = await from;
      const sink = await to;
      for (;;) {
        await this.#thawed?.promise;
        const n = await source.read(buffer);
        if (n === null) break;
        // The trigger goes through (frozen before it is written, so its answer
        // cannot slip past); other bytes read just before a freeze are held.
        if (toServer && this.#triggeredBy(buffer.subarray(0, n))) this.freeze();
        else await this.#thawed?.promise;
        let written = 0;
        while (written < n) written += await sink.write(buffer.subarray(written, n));
      }
    } catch {
      // A side closed or was cut: the link goes.
    }
    this.#drop(link);
  }

  #triggeredBy(chunk: Uint8Array): boolean {
    const trigger = this.#trigger;
    if (trigger === undefined) return false;
    for (let i = 0; i + trigger.length <= chunk.length; i++) {
      if (trigger.every((byte, k) => chunk[i + k] === byte)) {
        this.#trigger = undefined;
        return true;
      }
    }
    return false;
  }

  #drop(link: Link): void {
    if (!this.#links.delete(link)) return;
    try {
      link.client.close();
    } catch { /* closed */ }
    link.upstream.then((c) => {
      try {
        c.close();
      } catch { /* closed */ }
    }, () => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.thaw();
    this.#listener.close();
    this.cut();
    await this.#accepting.catch(() => {});
    await Promise.allSettled([...this.#pumps]);
  }
}
