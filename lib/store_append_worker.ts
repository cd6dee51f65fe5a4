/**
 * The main side of the SQLite append worker (`_sqlite_append_worker.ts`):
 * a {@linkcode BatchWriter} that hands each group-commit batch to a worker
 * thread with its own connection to the same SQLite file, and gives each
 * caller its own outcome back. Why: SQLite is synchronous, so on the main
 * thread its work for every message stalls every socket; in the worker it
 * runs on the other core. WAL lets the main connection read meanwhile, and
 * a committed batch is visible to the main connection's next read. At light
 * load small batches are written on a connection of this thread instead
 * (see {@linkcode INLINE_MAX_BATCH}).
 *
 * Needs read permission on `lib/` (the worker's module files) besides the
 * database file's own permissions. The messages and their codec are in
 * `_append_wire.ts`.
 *
 * @module
 */

import type { AppendOutcome, AppendRequest } from "./store.ts";
import { WAL_SYNC_INTERVAL_MS } from "./_sqlite_pragmas.ts";
import { AppendConnection } from "./_sqlite_append_connection.ts";
import {
  decodeOutcomes,
  encodeBatch,
  fromWire,
  type WorkerReply,
  type WorkerRequest,
} from "./_append_wire.ts";

/**
 * Every append is refused: with durable acks on, a sync of the database to
 * disk failed, and only a restart (after checking the disk) lifts it. Not a
 * full disk even when the failed sync was one (ENOSPC): freeing space does
 * not make the lost pages written.
 */
export class SyncFailedError extends Error {
  /** `cause`: the failed sync's error. */
  constructor(cause: unknown) {
    super("Messages cannot be stored safely: a sync of the database to disk failed", { cause });
    this.name = "SyncFailedError";
  }
}

/** Options of {@linkcode AppendWorker.start}. */
export interface AppendWorkerOptions {
  /** How long a write waits for another connection's write lock. @default {5000} */
  readonly busyTimeoutMs?: number;
  /** How long the worker may take to load and open the file. @default {10000} */
  readonly startTimeoutMs?: number;
  /** How long {@linkcode AppendWorker.close} waits for the worker. @default {5000} */
  readonly closeTimeoutMs?: number;
  /**
   * How often the worker syncs new WAL frames in the background, ms; 0 = never
   * (`_wal_flusher.ts`). @default {WAL_SYNC_INTERVAL_MS}
   */
  readonly walSyncMs?: number;
  /**
   * Durable acks: a batch resolves only once its commit is synced to disk,
   * on either thread (`AppendConnectionOptions.durable`). @default {false}
   */
  readonly durable?: boolean;
  /** Gets the worker's warnings (a line each) for the server's log. @default {ignored} */
  readonly onWarning?: (message: string) => void;
  /**
   * Write a small batch on this thread when the worker has nothing to do
   * (see {@linkcode INLINE_MAX_BATCH}). @default {true}
   */
  readonly inlineWhenIdle?: boolean;
}

/**
 * The largest batch written on the main thread when the worker is idle. A
 * batch up to this size costs its SQLite work less than the hop to the worker
 * and back (two thread wake-ups, a copy each way); it keeps this thread from
 * its sockets for some 1 - 2 ms at most (32 appends at the 25 - 50 µs of
 * SQLite work each that round 13's profile shows). A larger batch means load,
 * and goes to the worker to run beside this thread. Was 4 until round 13 of
 * bench/RESULTS.md: 32 (with {@linkcode INLINE_MAX_RATE} 8,000) cut the
 * process's CPU by 10 - 35 % at 2,000 - 6,000 1:1 msgs/s.
 */
export const INLINE_MAX_BATCH = 32;

/**
 * At most this many batches in a row are written on the main thread; the
 * next goes to the worker, whose commit checkpoints the WAL once it is long
 * enough (the main thread's connection never checkpoints: that would stall
 * every socket). So the WAL stays bounded when the load stays light.
 */
export const INLINE_STREAK = 256;

/**
 * Appends per second above which every batch goes to the worker, measured
 * over {@linkcode INLINE_WINDOW_MS}. Each switch between the two connections
 * costs the other one its page cache (SQLite drops it when another
 * connection wrote), so the choice is made per window, not per batch: at
 * 4,000 1:1 msgs/s, choosing per batch cost 10 % more CPU than the worker
 * alone (bench/RESULTS.md, round 11). Above this rate the main thread is
 * better left to the sockets, with the SQLite work beside it (round 13).
 */
export const INLINE_MAX_RATE = 8000;

/** How long a measured rate decides the path, ms. */
export const INLINE_WINDOW_MS = 250;

/** Batches written so far, by where. */
export interface AppendWorkerStats {
  /** Written on the calling thread's own connection (the worker was idle). */
  readonly inlineBatches: number;
  /** Handed to the worker. */
  readonly workerBatches: number;
}

/** The worker stopped (crashed, or was closed); its batches were not answered. */
export class AppendWorkerStopped extends Error {
  override readonly name = "AppendWorkerStopped";
}

interface Waiter {
  readonly batch: readonly AppendRequest[];
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
  /** Set once a WAL sync failed with durable acks on: every later append is refused. */
  #unsynced: SyncFailedError | undefined;
  #onClosed: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  #onWarning: ((message: string) => void) | undefined;
  #inline: AppendConnection | undefined;
  /** Settles (never rejects) when the batch being written on this thread is done. */
  #inlineRun: Promise<void> | undefined;
  #inlineStreak = 0;
  /** Whether this window's batches may be written on this thread (see {@linkcode INLINE_MAX_RATE}). */
  #inlineWindow = true;
  #windowStart = 0;
  #windowAppends = 0;
  #inlineBatches = 0;
  #workerBatches = 0;

  private constructor(
    worker: Worker,
    closeTimeoutMs: number,
    onWarning: ((message: string) => void) | undefined,
  ) {
    this.#worker = worker;
    this.#closeTimeoutMs = closeTimeoutMs;
    this.#onWarning = onWarning;
  }

  /**
   * Start the worker module at `url` on the SQLite file at `path` (migrated
   * already). Rejects, leaving nothing running, when it cannot load or open
   * the file in time.
   */
  static start(url: URL, path: string, options: AppendWorkerOptions = {}): Promise<AppendWorker> {
    const worker = new Worker(url, { type: "module", name: "sqlite-append" });
    const self = new AppendWorker(worker, options.closeTimeoutMs ?? 5000, options.onWarning);
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
          try {
            if (options.inlineWhenIdle ?? true) {
              self.#inline = new AppendConnection(path, {
                busyTimeoutMs: options.busyTimeoutMs ?? 5000,
                walSyncMs: options.walSyncMs ?? WAL_SYNC_INTERVAL_MS,
                checkpoints: false,
                durable: options.durable ?? false,
                onSyncFailed: (error) => self.#syncFailed(error),
                warn: (message) => self.#onWarning?.(message),
              });
            }
          } catch (error) {
            fail(error);
            return;
          }
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
          walSyncMs: options.walSyncMs ?? WAL_SYNC_INTERVAL_MS,
          durable: options.durable ?? false,
        } satisfies WorkerRequest,
      );
    });
  }

  /** Whether the worker still takes batches. */
  get running(): boolean {
    return this.#stopped === undefined;
  }

  /** Why every append is refused (a failed sync with durable acks), if it is. */
  get refusing(): SyncFailedError | undefined {
    return this.#unsynced;
  }

  /**
   * {@linkcode BatchWriter}: write `batch` in the worker, or on this thread
   * when the worker is idle and the batch small; rejects with the whole
   * batch's error. Batches are written one after another in call order, by
   * one connection at a time.
   */
  write(batch: readonly AppendRequest[]): Promise<AppendOutcome[]> {
    if (this.#stopped !== undefined) return Promise.reject(this.#stopped);
    // Durable acks after a failed sync: not even committed, so nothing is stored unacked.
    if (this.#unsynced !== undefined) return Promise.reject(this.#unsynced);
    if (batch.length === 0) return Promise.resolve([]);
    const running = this.#inlineRun;
    if (running !== undefined) return running.then(() => this.write(batch));
    const inline = this.#inline;
    if (
      inline !== undefined && this.#lightLoad(batch.length) && this.#waiters.size === 0 &&
      batch.length <= INLINE_MAX_BATCH && this.#inlineStreak < INLINE_STREAK
    ) {
      this.#inlineStreak++;
      this.#inlineBatches++;
      const written = inline.write(batch);
      const done: Promise<void> = written.then(noop, noop).then(() => {
        if (this.#inlineRun === done) this.#inlineRun = undefined;
      });
      this.#inlineRun = done;
      return written;
    }
    this.#inlineStreak = 0;
    this.#workerBatches++;
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiters.set(id, { batch, resolve, reject });
      this.#worker.postMessage(
        { kind: "batch", id, batch: encodeBatch(batch) } satisfies WorkerRequest,
      );
    });
  }

  /** Batches written so far, by where. */
  stats(): AppendWorkerStats {
    return { inlineBatches: this.#inlineBatches, workerBatches: this.#workerBatches };
  }

  /** Count `appends`; whether the last window's rate allows writing on this thread. */
  #lightLoad(appends: number): boolean {
    const now = performance.now();
    const elapsed = now - this.#windowStart;
    if (elapsed >= INLINE_WINDOW_MS) {
      this.#inlineWindow = this.#windowAppends * 1000 < INLINE_MAX_RATE * elapsed;
      this.#windowStart = now;
      this.#windowAppends = 0;
    }
    this.#windowAppends += appends;
    return this.#inlineWindow;
  }

  /** Let the batches sent finish, close the worker's connection and end the thread. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    while (this.#inlineRun !== undefined) await this.#inlineRun;
    const inline = this.#inline;
    this.#inline = undefined;
    try {
      await inline?.close();
    } finally {
      await this.#closeWorker();
    }
  }

  async #closeWorker(): Promise<void> {
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

  /**
   * A WAL sync failed with durable acks on (either connection): a failed
   * `fdatasync` may have dropped pages, so a later sync through another
   * handle proves nothing, and no append is taken from now on.
   */
  #syncFailed(error: unknown): void {
    this.#unsynced ??= new SyncFailedError(error);
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
      if (reply.kind === "syncFailed") {
        this.#syncFailed(fromWire(reply.error));
        return;
      }
      if (reply.kind === "warning") {
        this.#onWarning?.(reply.message);
        return;
      }
      const waiter = this.#waiters.get(reply.id);
      if (waiter === undefined) return;
      this.#waiters.delete(reply.id);
      if (reply.kind === "failed") {
        waiter.reject(fromWire(reply.error));
      } else {
        waiter.resolve(decodeOutcomes(reply.outcomes, waiter.batch));
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

function noop(): void {}
