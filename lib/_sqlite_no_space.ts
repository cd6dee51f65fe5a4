/**
 * SQLite I/O errors that mean the disk is full. SQLite reports most writes
 * that meet a full disk as SQLITE_FULL, but some as a plain "disk I/O
 * error": growing the `-shm` index (SQLITE_IOERR_SHMSIZE, seen on a full
 * tmpfs), an fsync that reports a delayed allocation's ENOSPC (XFS, btrfs,
 * NFS), an allocation with fallocate or a quota's EDQUOT
 * (SQLITE_IOERR_WRITE), a file extended with ftruncate. `node:sqlite` gives
 * no errno with them, and a real I/O error (a failing disk) must not be
 * called "disk full"; so for those codes a small probe file is written
 * next to the database, and only when it cannot take 64 KiB is the error
 * replaced by a {@linkcode NoSpaceError}. Runs only on an error, never on
 * the write path.
 *
 * Loaded by the append worker too: no runtime import beyond `node:path`.
 *
 * @module
 */

import { join } from "node:path";
import { writeAll } from "./bytes.ts";

/** SQLite's extended codes of the I/O errors a full disk can cause. */
const SPACE_IO_ERRORS: ReadonlyMap<number, string> = new Map([
  [778, "SQLITE_IOERR_WRITE"],
  [1034, "SQLITE_IOERR_FSYNC"],
  [1546, "SQLITE_IOERR_TRUNCATE"],
  [4874, "SQLITE_IOERR_SHMSIZE"],
]);

/**
 * More than one SQLite write of those needs (a `-shm` region is 32 KiB, a
 * page at most 64 KiB), and the most `crypto.getRandomValues` fills at once.
 */
const PROBE_BYTES = 64 * 1024;

/** The probe's file name in the database's folder (one name: a crash leaves at most one). */
const PROBE_NAME = ".lanchat-space-probe";

/**
 * A SQLite I/O error that came with a full disk. Its `code` is ENOSPC, so
 * `isDiskFull` knows it, also after it crossed the append worker's wire.
 */
export class NoSpaceError extends Error {
  /** As the OS's error for a full disk. */
  readonly code = "ENOSPC";

  /** Wrap SQLite's error `cause` (named `ioerr`). */
  constructor(ioerr: string, options: ErrorOptions) {
    super(
      `No space left on device: SQLite's disk I/O error (${ioerr}) came with a full disk`,
      options,
    );
    this.name = "NoSpaceError";
  }
}

/**
 * The name of `error`'s SQLite I/O error if a full disk can cause it, else
 * undefined. Deno's `DatabaseSync.exec()` (our `COMMIT`, the pragmas at
 * open) throws without `errcode`, with SQLite's message alone: a bare
 * "disk I/O error" may be any of them, and the probe decides.
 */
export function spaceIoError(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const { errcode } = error as { errcode?: unknown };
  if (typeof errcode === "number") return SPACE_IO_ERRORS.get(errcode);
  return error.message === "disk I/O error" ? "SQLITE_IOERR" : undefined;
}

/**
 * Whether the file system holding `dir` is full: a probe file there cannot
 * take {@linkcode PROBE_BYTES} (ENOSPC, or a quota's EDQUOT). Any other
 * failure (a permission, an I/O error) says nothing about space: false.
 * Random bytes, since a file system that compresses (ZFS, btrfs) stores
 * zeros in no space at all.
 */
export async function diskIsFull(dir: string): Promise<boolean> {
  const path = join(dir, PROBE_NAME);
  const bytes = crypto.getRandomValues(new Uint8Array(PROBE_BYTES));
  try {
    // Synced: a file system that reports a full disk only at write-back
    // (NFS, some quotas) accepts the write into its cache.
    using file = await Deno.open(path, { write: true, create: true, truncate: true });
    await writeAll(file, bytes);
    await file.syncData();
    return false;
  } catch (error) {
    return error instanceof Error &&
      (/^(ENOSPC|EDQUOT)$/.test(String((error as { code?: unknown }).code)) ||
        /No space left on device|Disk quota exceeded/i.test(error.message));
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/**
 * `error` as the caller should see it: a {@linkcode NoSpaceError} when it is
 * one of SQLite's I/O errors a full disk causes and the disk holding `dir`
 * is full, else `error` itself. Without `dir` (`:memory:`) it is unchanged.
 */
export async function explainSqliteError(
  error: unknown,
  dir: string | undefined,
): Promise<unknown> {
  const ioerr = spaceIoError(error);
  if (ioerr === undefined || dir === undefined) return error;
  return await diskIsFull(dir) ? new NoSpaceError(ioerr, { cause: error }) : error;
}
