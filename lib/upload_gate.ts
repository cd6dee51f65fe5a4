/**
 * How many uploads a node reads at once. An upload streams its file to
 * disk as it arrives (about 64 KiB of it in memory at a time), but each one
 * being read holds a socket, an open file and a share of the disk's writes,
 * so without a bound a few logged-in clients sending large files together
 * could starve the rest of the node. Uploads past the bound wait
 * their turn, briefly and in order; each user has at most
 * {@linkcode UPLOADS_PER_USER} in flight, so one account cannot hold every
 * turn. The gate also tracks the bytes each user has in flight, so two
 * uploads of one user cannot both pass the quota check that only one of
 * them fits.
 *
 * @module
 */

import type { LimitName } from "./abuse_limits.ts";
import { BusyError, RateLimitError } from "./errors.ts";

/** Uploads one user may have in flight on a node; the next is refused (429). */
export const UPLOADS_PER_USER = 2;
/** How long an upload waits for a turn before it is refused (503), ms. */
export const UPLOAD_WAIT_MS = 30_000;
/**
 * Uploads that may wait at once; more are refused at once (503). The
 * waiting ones have not been read yet, so they cost a socket each.
 */
export const UPLOAD_QUEUE = 64;

/**
 * How long an upload may take to arrive while it holds its turn, ms: a
 * client trickling its body would otherwise keep the turn from others.
 * 10 MiB in two minutes is about 90 KB/s.
 */
export const UPLOAD_READ_MS = 120_000;

/** Options of {@linkcode UploadGate}. */
export interface UploadGateOptions {
  /** Uploads read at once on this node (`CHAT_UPLOAD_CONCURRENCY`). */
  readonly concurrent: number;
  /** Override {@linkcode UPLOADS_PER_USER}. */
  readonly perUser?: number;
  /** Override {@linkcode UPLOAD_WAIT_MS}. */
  readonly waitMs?: number;
  /** Override {@linkcode UPLOAD_QUEUE}. */
  readonly queue?: number;
  /** Override {@linkcode UPLOAD_READ_MS}. */
  readonly readMs?: number;
  /** Told when an upload is refused, for `lanchat_limited_total`. */
  readonly onLimited?: (limit: Extract<LimitName, "upload_user" | "upload_busy">) => void;
}

/** One upload's turn: hold it while the upload is read and stored. */
export interface UploadTurn {
  /**
   * Note that this upload will add `bytes`; returns the bytes the user's
   * other uploads in flight have noted, for the quota check.
   */
  reserve(bytes: number): number;
  /** Give the turn back (idempotent). */
  release(): void;
}

interface Waiter {
  readonly grant: () => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** The per-node bound on uploads being read; see the module doc. */
export class UploadGate {
  #concurrent: number;
  #perUser: number;
  #waitMs: number;
  #queue: number;
  #onLimited: (limit: Extract<LimitName, "upload_user" | "upload_busy">) => void;
  /** How long an upload may take to arrive while it holds its turn, ms. */
  readonly readMs: number;
  #running = 0;
  #waiting: Waiter[] = [];
  /** In-flight uploads per user: turns held or awaited, and bytes noted. */
  #users = new Map<number, { uploads: number; bytes: Map<symbol, number> }>();

  /** A gate letting `options.concurrent` uploads through at once. */
  constructor(options: UploadGateOptions) {
    this.#concurrent = Math.max(1, Math.floor(options.concurrent));
    this.#perUser = Math.max(1, Math.floor(options.perUser ?? UPLOADS_PER_USER));
    this.#waitMs = Math.max(0, options.waitMs ?? UPLOAD_WAIT_MS);
    this.#queue = Math.max(0, Math.floor(options.queue ?? UPLOAD_QUEUE));
    this.#onLimited = options.onLimited ?? (() => {});
    this.readMs = Math.max(1, options.readMs ?? UPLOAD_READ_MS);
  }

  /** Uploads being read now. */
  get running(): number {
    return this.#running;
  }

  /** Uploads waiting for a turn. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Wait for a turn for an upload of `userId`. Throws {@linkcode RateLimitError}
   * when the user has {@linkcode UPLOADS_PER_USER} in flight already, and
   * {@linkcode BusyError} when the queue is full or the wait runs out. An
   * abort of `signal` (the client went away) leaves the queue and rejects
   * with its reason.
   */
  async enter(userId: number, signal?: AbortSignal): Promise<UploadTurn> {
    signal?.throwIfAborted();
    const user = this.#users.get(userId) ?? { uploads: 0, bytes: new Map<symbol, number>() };
    if (user.uploads >= this.#perUser) {
      this.#onLimited("upload_user");
      throw new RateLimitError(
        `You have ${this.#perUser} uploads in progress; wait for one to finish`,
        1,
      );
    }
    if (this.#running >= this.#concurrent && this.#waiting.length >= this.#queue) {
      this.#onLimited("upload_busy");
      throw busy();
    }
    user.uploads++;
    this.#users.set(userId, user);
    try {
      if (this.#running < this.#concurrent) this.#running++;
      else await this.#wait(signal);
    } catch (e) {
      this.#leave(userId, user);
      throw e;
    }
    return this.#turn(userId, user);
  }

  /** Resolves when a finished upload hands this one its turn (`#running` stays counted). */
  #wait(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const leave = (error: unknown) => {
        clearTimeout(waiter.timer);
        signal?.removeEventListener("abort", onAbort);
        const i = this.#waiting.indexOf(waiter);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(error);
      };
      const onAbort = () => leave(signal?.reason);
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(waiter.timer);
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        timer: setTimeout(() => {
          this.#onLimited("upload_busy");
          leave(busy());
        }, this.#waitMs),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #turn(userId: number, user: { uploads: number; bytes: Map<symbol, number> }): UploadTurn {
    const key = Symbol();
    let held = true;
    return {
      reserve: (bytes) => {
        let others = 0;
        for (const [k, b] of user.bytes) if (k !== key) others += b;
        if (held) user.bytes.set(key, bytes);
        return others;
      },
      release: () => {
        if (!held) return;
        held = false;
        user.bytes.delete(key);
        this.#leave(userId, user);
        const next = this.#waiting.shift();
        // The turn passes straight to the next waiter, so `#running` stays.
        if (next === undefined) this.#running--;
        else next.grant();
      },
    };
  }

  #leave(userId: number, user: { uploads: number }): void {
    user.uploads--;
    if (user.uploads === 0) this.#users.delete(userId);
  }
}

function busy(): BusyError {
  return new BusyError("The server is busy with other uploads; try again shortly", 5);
}
