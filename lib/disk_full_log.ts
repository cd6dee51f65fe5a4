/**
 * The node's "the disk is full" log line, at most once per interval. Until
 * space is freed every write meets the full disk again — each resent
 * message, each HTTP retry — and a line per write would flood the log (on a
 * disk that may be the full one). The websocket's appends and the HTTP
 * routes share one: `main.ts` makes it and passes it to the store and to
 * the HTTP app.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

const logger = getLogger(["chat", "store"]);

/** Options of {@linkcode DiskFullLog}. */
export interface DiskFullLogOptions {
  /** At most one line per this many ms. @default {10000} */
  readonly intervalMs?: number;
  /** Clock in epoch ms. @default {Date.now} */
  readonly now?: () => number;
}

/** Logs a full disk once per interval, counting the refusals between. */
export class DiskFullLog {
  readonly #intervalMs: number;
  readonly #now: () => number;
  #loggedAt = -Infinity;
  /** Writes refused since the last line. */
  #unlogged = 0;

  constructor(options: DiskFullLogOptions = {}) {
    this.#intervalMs = options.intervalMs ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** A write (`what`, e.g. "message append" or "POST /user/register") met a full disk. */
  report(error: unknown, what: string): void {
    const now = this.#now();
    if (now - this.#loggedAt < this.#intervalMs) {
      this.#unlogged++;
      return;
    }
    logger.error(
      "The disk is full: nothing can be stored until space is freed ({what}; " +
        "{unlogged} more refused since the last line): {error}",
      { what, unlogged: this.#unlogged, error },
    );
    this.#loggedAt = now;
    this.#unlogged = 0;
  }
}
