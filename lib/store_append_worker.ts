/**
 * The main side of the SQLite append worker (`_sqlite_append_worker.ts`):
 * a {@linkcode BatchWriter} that hands each group-commit batch to a worker
 * thread with its own connection to the same SQLite file, and gives each
 * caller its own outcome back. Why: SQLite is synchronous, so on the main
 * thread its work for every message stalls every socket; in the worker it
 * runs on the other core. WAL lets the main connection read meanwhile, and
 * a committed batch is visible to the main connection's next read.
 *
 * Needs read permission on `lib/` (the worker's module files) besides the
 * database file's own permissions. The worker imports this module at run
 * time (the wire helpers), so it has type-only imports and no others.
 *
 * @module
 */

import type { AppendOutcome, AppendRequest, AppendResult } from "./store.ts";

/** An error that crossed the thread boundary as plain fields. */
export interface WireError {
  readonly name: string;
  readonly message: string;
  /** Postgres-style SQLSTATE or a Node-style code, when the error had one. */
  readonly code?: string;
  /** SQLite's extended result code, when the error had one. */
  readonly errcode?: number;
}

/** One item's outcome as it crosses the thread boundary. */
export type WireOutcome =
  | { readonly ok: true; readonly result: AppendResult }
  | { readonly ok: false; readonly error: WireError };

/** What the main side asks of the worker. */
export type WorkerRequest =
  | { readonly kind: "open"; readonly path: string; readonly busyTimeoutMs: number }
  | { readonly kind: "batch"; readonly id: number; readonly batch: readonly AppendRequest[] }
  | { readonly kind: "close" };

/** What the worker answers. `failed` with id 0 answers `open`. */
export type WorkerReply =
  | { readonly kind: "opened" }
  | { readonly kind: "done"; readonly id: number; readonly outcomes: readonly WireOutcome[] }
  | { readonly kind: "failed"; readonly id: number; readonly error: WireError }
  | { readonly kind: "closed" };

/** Options of {@linkcode AppendWorker.start}. */
export interface AppendWorkerOptions {
  /** How long a write waits for another connection's write lock. @default {5000} */
  readonly busyTimeoutMs?: number;
  /** How long the worker may take to load and open the file. @default {10000} */
  readonly startTimeoutMs?: number;
  /** How long {@linkcode AppendWorker.close} waits for the worker. @default {5000} */
  readonly closeTimeoutMs?: number;
}

/** The worker stopped (crashed, or was closed); its batches were not answered. */
export class AppendWorkerStopped extends Error {
  override readonly name = "AppendWorkerStopped";
}

/** An error as plain fields: the name, message and the codes the store's checks read. */
export function toWire(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: "Error", message: String(error) };
  const { code, errcode } = error as { code?: unknown; errcode?: unknown };
  return {
    name: error.name,
    message: error.message,
    ...(typeof code === "string" ? { code } : {}),
    ...(typeof errcode === "number" ? { errcode } : {}),
  };
}

/** Rebuild an error from its wire fields (the store's checks read message, code and errcode). */
export function fromWire(wire: WireError): Error {
  const error = new Error(wire.message);
  error.name = wire.name;
  return Object.assign(
    error,
    wire.code === undefined ? {} : { code: wire.code },
    wire.errcode === undefined ? {} : { errcode: wire.errcode },
  );
}

interface Waiter {
  resolve(outcomes: AppendOutcome[]): void;
  reject(error: unknown): void;
}

/** A running append worker on one SQLite file. */
export class AppendWorker {
  #worker: Worker;
  #closeTimeoutMs: number;
  #waiters = new Map<number, Waiter>();
  #nextId = 1;
  #stopped: Error | undefined;
  #onClosed: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  private constructor(worker: Worker, closeTimeoutMs: number) {
    this.#worker = worker;
    this.#closeTimeoutMs = closeTimeoutMs;
  }

  /**
   * Start the worker module at `url` on the SQLite file at `path` (migrated
   * already). Rejects, leaving nothing running, when it cannot load or open
   * the file in time.
   */
  static start(url: URL, path: string, options: AppendWorkerOptions = {}): Promise<AppendWorker> {
    const worker = new Worker(url, { type: "module", name: "sqlite-append" });
    const self = new AppendWorker(worker, options.closeTimeoutMs ?? 5000);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new Error("The append worker did not start in time")),
        options.startTimeoutMs ?? 10_000,
      );
      const fail = (error: unknown) => {
        clearTimeout(timer);
        worker.terminate();
        reject(error);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        fail(new Error(`The append worker failed to load: ${event.message}`));
      };
      worker.onmessage = (event: MessageEvent<WorkerReply>) => {
        const reply = event.data;
        if (reply.kind === "opened") {
          clearTimeout(timer);
          self.#listen();
          resolve(self);
        } else if (reply.kind === "failed") {
          fail(fromWire(reply.error));
        }
      };
      worker.postMessage(
        {
          kind: "open",
          path,
          busyTimeoutMs: options.busyTimeoutMs ?? 5000,
        } satisfies WorkerRequest,
      );
    });
  }

  /** Whether the worker still takes batches. */
  get running(): boolean {
    return this.#stopped === undefined;
  }

  /** {@linkcode BatchWriter}: write `batch` in the worker; rejects with the whole batch's error. */
  write(batch: readonly AppendRequest[]): Promise<AppendOutcome[]> {
    if (this.#stopped !== undefined) return Promise.reject(this.#stopped);
    if (batch.length === 0) return Promise.resolve([]);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiters.set(id, { resolve, reject });
      this.#worker.postMessage({ kind: "batch", id, batch } satisfies WorkerRequest);
    });
  }

  /** Let the batches sent finish, close the worker's connection and end the thread. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (this.#stopped === undefined) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      // Requests are answered in order, so "closed" comes after every batch sent.
      await Promise.race([
        new Promise<void>((resolve) => {
          this.#onClosed = resolve;
          this.#worker.postMessage({ kind: "close" } satisfies WorkerRequest);
        }),
        new Promise<void>((resolve) => timer = setTimeout(resolve, this.#closeTimeoutMs)),
      ]);
      clearTimeout(timer);
    }
    this.#stop(new AppendWorkerStopped("The append worker is closed"));
  }

  #listen(): void {
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#stop(new AppendWorkerStopped(`The append worker crashed: ${event.message}`));
    };
    this.#worker.onmessage = (event: MessageEvent<WorkerReply>) => {
      const reply = event.data;
      if (reply.kind === "closed") {
        this.#onClosed?.();
        return;
      }
      if (reply.kind === "opened") return;
      const waiter = this.#waiters.get(reply.id);
      if (waiter === undefined) return;
      this.#waiters.delete(reply.id);
      if (reply.kind === "failed") {
        waiter.reject(fromWire(reply.error));
      } else {
        waiter.resolve(
          reply.outcomes.map((o) => o.ok ? o : { ok: false, error: fromWire(o.error) }),
        );
      }
    };
  }

  /** Stop for good: reject every unanswered batch with `error` and end the thread. */
  #stop(error: Error): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = error;
    this.#worker.terminate();
    for (const waiter of this.#waiters.values()) waiter.reject(error);
    this.#waiters.clear();
  }
}
