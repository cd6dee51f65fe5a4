/**
 * The per-connection SQLite settings every connection of the store applies
 * (the Kysely dialect's and the append worker's). No imports: the append
 * worker loads this file.
 *
 * @module
 */

/**
 * Pages in the WAL before a commit checkpoints them into the database file.
 * SQLite's default is 1,000 (4 MiB). A 1:1 message dirties about two index
 * pages of its own (its conversation's and its sender's), so a commit of
 * 40 messages writes about 100 pages and the default checkpoints every ten
 * commits; at 10,000 a page rewritten by many commits is copied to the file
 * once per checkpoint instead of ten times: about 18 % less SQLite time per
 * message (bench/RESULTS.md, round 3). The WAL file grows to about 40 MiB.
 */
export const WAL_AUTOCHECKPOINT_PAGES = 10_000;

/**
 * How often the append worker syncs the WAL's new frames in the background
 * while commits come (`_wal_flusher.ts`), ms. Short enough that a checkpoint
 * finds little unsynced (at 100 ms a light-load checkpoint's WAL fsync took
 * 0.3-0.6 ms instead of 25-31 ms), long enough that at high rates the syncs
 * stay a few per second of one blocking-pool thread.
 */
export const WAL_SYNC_INTERVAL_MS = 100;

/**
 * Statements run on every new connection after `journal_mode = WAL`: no
 * blocking busy handler (callers retry after an async sleep instead, since
 * `node:sqlite` is synchronous), no fsync per commit in WAL (only at
 * checkpoints: a power cut may lose the last commits, never corrupt the
 * file), foreign keys on, and the checkpoint interval above.
 */
export const CONNECTION_PRAGMAS: readonly string[] = [
  "PRAGMA synchronous = NORMAL",
  "PRAGMA foreign_keys = ON",
  `PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`,
];
