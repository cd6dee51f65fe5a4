/**
 * One `node:sqlite` connection that writes group-commit batches (issue #7),
 * used by the append worker (`_sqlite_append_worker.ts`) and, for a batch
 * that finds the worker idle, by the main thread (`store_append_worker.ts`).
 *
 * No runtime import may pull in Kysely: the worker loads this file under the
 * server's narrow read permission.
 *
 * @module
 */

import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { isItemError, lookupOnDemand, writeBatch, type WriteBatchOptions } from "./_batch_sql.ts";
import { isUniqueViolation } from "./_store_kysely_rows.ts";
import { CONNECTION_PRAGMAS } from "./_sqlite_pragmas.ts";
import { explainSqliteError } from "./_sqlite_no_space.ts";
import { syncDataAt, WalFlusher } from "./_wal_flusher.ts";
import type { AppendOutcome, AppendRequest, AppendResult } from "./store.ts";

/**
 * How many prepared statements the connection keeps, least recently used
 * dropped first. A batch's three texts differ by its size and its number of
 * conversations (up to 128 each): with 256, first in first out, the
 * worker spent 3 % of its time preparing at 12,000 1:1 msgs/s (round 7).
 */
const STATEMENT_CACHE_SIZE = 512;

/** Options of {@linkcode AppendConnection}. */
export interface AppendConnectionOptions {
  /** How long a write waits for another connection's write lock, ms. */
  readonly busyTimeoutMs: number;
  /** The WAL flusher's interval (`_wal_flusher.ts`), ms; 0: no background WAL syncs. */
  readonly walSyncMs: number;
  /**
   * Whether this connection's commits checkpoint the WAL once it holds
   * `WAL_AUTOCHECKPOINT_PAGES`. Off for the main thread's connection: a
   * checkpoint there would stall every socket (the worker's commits run
   * them instead). @default {true}
   */
  readonly checkpoints?: boolean;
  /** Gets a line for the server's log. */
  readonly warn: (message: string) => void;
  /**
   * Durable acks: {@linkcode AppendConnection.write} resolves only once the
   * batch's commit is synced to disk (the WAL flusher syncs at once, one
   * sync for every commit made meanwhile), instead of within `walSyncMs`.
   * @default {false}
   */
  readonly durable?: boolean;
  /** Durable acks: told when a WAL sync fails (nothing may be acked after it). @default {none} */
  readonly onSyncFailed?: (error: unknown) => void;
  /** Sync the WAL at `path` (tests watch it). @default {syncDataAt} */
  readonly sync?: (path: string) => Promise<void>;
}

/** One `node:sqlite` connection that writes batches in `BEGIN IMMEDIATE` transactions. */
export class AppendConnection {
  #db: DatabaseSync;
  /** The database's folder: a probe there tells a full disk behind an I/O error. */
  #folder: string;
  #busyTimeoutMs: number;
  #statements = new Map<string, StatementSync>();
  #inTransaction = false;
  #flusher: WalFlusher | undefined;
  /** See {@linkcode AppendConnectionOptions.durable}. */
  readonly durable: boolean;

  /** Open the SQLite file at `path` (migrated already, in WAL mode). */
  constructor(path: string, options: AppendConnectionOptions) {
    const { walSyncMs, warn } = options;
    const sync = options.sync ?? syncDataAt;
    this.durable = options.durable ?? false;
    this.#db = new DatabaseSync(path);
    this.#folder = dirname(path);
    this.#busyTimeoutMs = options.busyTimeoutMs;
    if (walSyncMs > 0 || this.durable) {
      // SQLite names the WAL after the database file.
      const wal = `${path}-wal`;
      this.#flusher = new WalFlusher({
        sync: () => sync(wal),
        intervalMs: walSyncMs,
        onError: (error) => {
          warn(
            this.durable
              ? `A sync of ${wal} failed: appends are refused from now on (${error}); ` +
                "check the disk, then restart"
              : `Background syncs of ${wal} stopped (SQLite's own syncs go on): ${error}`,
          );
          if (this.durable) options.onSyncFailed?.(error);
        },
      });
    }
    try {
      // As lib/_sqlite_dialect.ts (journal_mode is WAL already: the main side migrated).
      this.#db.exec("PRAGMA busy_timeout = 0");
      for (const pragma of CONNECTION_PRAGMAS) this.#db.exec(pragma);
      if (options.checkpoints === false) this.#db.exec("PRAGMA wal_autocheckpoint = 0");
    } catch (error) {
      this.#db.close();
      throw error;
    }
  }

  /** {@linkcode BatchQuery} on this connection, through a small statement cache. */
  #query = <R>(sql: string, params: unknown[]): Promise<R[]> => {
    const statements = this.#statements;
    let statement = statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      if (statements.size >= STATEMENT_CACHE_SIZE) {
        const oldest = statements.keys().next();
        if (!oldest.done) statements.delete(oldest.value);
      }
    } else {
      statements.delete(sql); // to the back: the Map's order is the use order
    }
    statements.set(sql, statement);
    return Promise.resolve(statement.all(...(params as (string | number | null)[])) as R[]);
  };

  /**
   * As the Kysely store's `appendMessages`: one transaction, per item on an
   * item's error; with durable acks it resolves once that is on disk.
   */
  async write(batch: readonly AppendRequest[]): Promise<AppendOutcome[]> {
    if (batch.length === 0) return [];
    const outcomes = await this.commit(batch);
    if (this.durable) await this.synced();
    return outcomes;
  }

  /**
   * With durable acks: resolves once every commit made so far is on disk
   * (see {@linkcode WalFlusher.durable}). The worker calls it after
   * {@linkcode commit} and answers then, while it writes the next batch.
   */
  synced(): Promise<void> {
    return this.#flusher?.durable() ?? Promise.resolve();
  }

  /** {@linkcode write} without waiting for the disk. */
  async commit(batch: readonly AppendRequest[]): Promise<AppendOutcome[]> {
    if (batch.length === 0) return [];
    try {
      const results = await lookupOnDemand((options) => this.#transaction(batch, options));
      return results.map((result) => ({ ok: true, result }));
    } catch (error) {
      if (!isItemError(error)) throw error;
    }
    const outcomes: AppendOutcome[] = [];
    for (const item of batch) {
      try {
        outcomes.push({ ok: true, result: await this.#one(item) });
      } catch (error) {
        outcomes.push({ ok: false, error });
      }
    }
    return outcomes;
  }

  async #one(item: AppendRequest): Promise<AppendResult> {
    try {
      return only(await this.#transaction([item], {}));
    } catch (error) {
      // Another connection stored the same cid meanwhile: the rerun finds it.
      if (!isUniqueViolation(error)) throw error;
      return only(await this.#transaction([item], {}));
    }
  }

  async #transaction(
    batch: readonly AppendRequest[],
    options: WriteBatchOptions,
  ): Promise<AppendResult[]> {
    await this.#begin();
    try {
      const results = await writeBatch(this.#query, "sqlite", batch, options);
      this.#db.exec("COMMIT");
      this.#inTransaction = false;
      // Durable acks sync each commit at once (synced()), the interval is moot.
      if (!this.durable) this.#flusher?.wrote();
      return results;
    } catch (error) {
      if (this.#inTransaction) {
        this.#inTransaction = false;
        // SQLite rolls back by itself after SQLITE_FULL, IOERR or NOMEM; a
        // ROLLBACK then would throw "no transaction is active" instead of `error`.
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      }
      // E.g. the `-shm` index cannot grow: SQLite says "disk I/O error", not "full".
      throw await explainSqliteError(error, this.#folder);
    }
  }

  /** `BEGIN IMMEDIATE`, retried after short sleeps while another connection writes. */
  async #begin(): Promise<void> {
    const deadline = Date.now() + this.#busyTimeoutMs;
    let wait = 1;
    for (;;) {
      try {
        this.#db.exec("BEGIN IMMEDIATE");
        this.#inTransaction = true;
        return;
      } catch (error) {
        const busy = error instanceof Error && /database is locked/i.test(error.message);
        if (!busy || Date.now() >= deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, wait * Math.random()));
        wait = Math.min(wait * 2, 50);
      }
    }
  }

  async close(): Promise<void> {
    await this.#flusher?.close();
    this.#statements.clear();
    this.#db.close();
  }
}

function only(results: AppendResult[]): AppendResult {
  const [result] = results;
  if (result === undefined) throw new RangeError("A batch of one returned no result");
  return result;
}
