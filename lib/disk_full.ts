/**
 * A full disk, told apart from other failures so the client gets a clear,
 * retryable answer (503 with `Retry-After`, or an error frame naming the
 * message's `cid`) instead of a generic 500 or a socket closed with 1011
 * that it reconnects into again and again. Nothing is stored by a write
 * that met a full disk: SQLite rolls the transaction back, and an upload's
 * partial file is removed.
 *
 * @module
 */

import { BusyError } from "./errors.ts";

/** How long a client is asked to wait before trying again, seconds. */
const DISK_FULL_RETRY_SECONDS = 30;

/**
 * Whether `error` (or an error in its `cause` chain) is a full disk:
 * SQLite's SQLITE_FULL (13, "database or disk is full", also across the
 * append worker's wire), Postgres's 53100, the OS's ENOSPC ("No space left
 * on device") or EDQUOT (a quota: the same remedy), or a SQLite I/O error
 * that came with one (`NoSpaceError` of `_sqlite_no_space.ts`, code ENOSPC).
 */
export function isDiskFull(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; depth++) {
    const { code, errcode } = e as { code?: unknown; errcode?: unknown };
    if (typeof errcode === "number" && (errcode & 0xff) === 13) return true;
    // ENOSPC from the OS; 53100 (disk_full) from Postgres, whatever its lc_messages.
    if (code === "ENOSPC" || code === "EDQUOT" || code === "53100") return true;
    if (/database or disk is full|No space left on device|Disk quota exceeded/i.test(e.message)) {
      return true;
    }
    e = e.cause;
  }
  return false;
}

/** The client's answer for a write that met a full disk. */
export function diskFullError(cause: unknown): BusyError {
  return new BusyError(
    "The server's disk is full: nothing was stored. Try again later",
    DISK_FULL_RETRY_SECONDS,
    { cause },
  );
}
