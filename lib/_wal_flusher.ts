/**
 * Writes the SQLite WAL's new frames to disk in the background (issue #7).
 * Why: with `synchronous = NORMAL` nothing is synced per commit, so all the
 * WAL written since the last checkpoint is still dirty in the page cache
 * when the next checkpoint starts, and the checkpoint's first step, an fsync
 * of the WAL, took 25-31 ms for its 40 MiB on the append worker's thread,
 * while every message that arrived waited behind it (the light-load p99).
 * An `fdatasync` through a handle of our own runs on Deno's blocking pool,
 * not on the writing thread, and leaves the checkpoint little to sync
 * (0.3-0.6 ms; bench/RESULTS.md, round 9). SQLite's own syncs stay as they
 * are: this only moves the disk writes earlier.
 *
 * No imports: the append worker loads this file.
 *
 * @module
 */

/** Options of {@linkcode WalFlusher}. */
export interface WalFlusherOptions {
  /** Sync the WAL (see {@linkcode syncDataAt}). */
  readonly sync: () => Promise<void>;
  /** The longest a commit waits for its sync while commits keep coming, ms. */
  readonly intervalMs: number;
  /** Told once, when a sync fails; the flusher then stops (SQLite's own syncs still run). */
  readonly onError: (error: unknown) => void;
}

/**
 * Syncs the WAL once per interval while commits are written: one sync in
 * flight at a time, none when nothing was written since the last one. With
 * durable acks a commit asks for its sync at once ({@linkcode durable}):
 * every commit made while a sync runs shares the next one, so a busy
 * connection pays one `fdatasync` per sync time, not one per commit.
 */
export class WalFlusher {
  #options: WalFlusherOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #dirty = false;
  #stopped = false;
  /** The callers of {@linkcode durable} the next sync answers. */
  #waiting: PromiseWithResolvers<void> | undefined;
  /** Why syncs stopped, once one failed. */
  #failure: unknown;

  constructor(options: WalFlusherOptions) {
    this.#options = options;
  }

  /** A commit was written: sync it within the interval. */
  wrote(): void {
    if (this.#stopped) return;
    this.#dirty = true;
    if (this.#timer === undefined && this.#running === undefined) this.#schedule();
  }

  /**
   * A commit was written: resolves once a sync that started after this call
   * has ended, so the commit is on disk; rejects when that sync failed, or
   * syncs have stopped.
   */
  durable(): Promise<void> {
    if (this.#stopped) {
      return Promise.reject(this.#failure ?? new Error("The WAL flusher is closed"));
    }
    this.#dirty = true;
    this.#waiting ??= Promise.withResolvers();
    const synced = this.#waiting.promise;
    if (this.#running === undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#start();
    }
    // Else the sync in flight may have begun before this commit: the next one starts as it ends.
    return synced;
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#start();
    }, this.#options.intervalMs);
  }

  #start(): void {
    this.#running = this.#sync().finally(() => {
      this.#running = undefined;
      if (this.#stopped) return;
      if (this.#waiting !== undefined) this.#start();
      else if (this.#dirty) this.#schedule();
    });
  }

  async #sync(): Promise<void> {
    this.#dirty = false;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    try {
      await this.#options.sync();
      waiting?.resolve();
    } catch (error) {
      // A failed fdatasync may have dropped the dirty pages, so a later one
      // that succeeds proves nothing: syncs stop for good (as PostgreSQL
      // stops on a failed fsync), and every durable() rejects from now on.
      this.#stopped = true;
      this.#failure = error;
      waiting?.reject(error);
      // Commits made while this sync ran (TypeScript forgets the await in between).
      const next = this.#waiting as PromiseWithResolvers<void> | undefined;
      next?.reject(error);
      this.#waiting = undefined;
      this.#options.onError(error);
    }
  }

  /** Stop syncing; resolves once a sync in flight has ended. */
  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
    // Commits that asked for a sync still get it.
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting === undefined) return;
    if (this.#failure !== undefined) return waiting.reject(this.#failure);
    try {
      await this.#options.sync();
      waiting.resolve();
    } catch (error) {
      waiting.reject(error);
    }
  }
}

/**
 * `fdatasync` the file at `path` through a handle opened for it (so a WAL
 * that SQLite removed and made again is never a stale handle); a missing
 * file has nothing to sync. Needs read permission on `path`.
 */
export async function syncDataAt(path: string): Promise<void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  try {
    await file.syncData();
  } finally {
    file.close();
  }
}
