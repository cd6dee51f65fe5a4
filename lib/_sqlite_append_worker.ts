/**
 * The SQLite append worker (issue #7): group-commit batches written on the
 * worker's own `node:sqlite` connection, so SQLite's work for a message
 * (B-tree inserts, WAL writes), about half of the main thread's time in 1:1
 * chat, runs on another core while the main thread serves sockets. The main
 * side is `store_append_worker.ts`; the messages are in `_append_wire.ts`.
 *
 * Loaded as a worker module under the server's read permission, so its
 * runtime imports stay within `lib/` and never reach Kysely (`_batch_sql.ts`).
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { isItemError, lookupOnDemand, writeBatch, type WriteBatchOptions } from "./_batch_sql.ts";
import { isUniqueViolation } from "./_store_kysely_rows.ts";
import { CONNECTION_PRAGMAS } from "./_sqlite_pragmas.ts";
import { syncDataAt, WalFlusher } from "./_wal_flusher.ts";
import type { AppendOutcome, AppendRequest, AppendResult } from "./store.ts";
import {
  decodeBatch,
  encodeOutcomes,
  toWire,
  type WorkerReply,
  type WorkerRequest,
} from "./_append_wire.ts";

/**
 * How many prepared statements the connection keeps, least recently used
 * dropped first. A batch's three texts differ by its size and its number of
 * conversations (up to 128 each): with 256, first in first out, the
 * worker spent 3 % of its time preparing at 12,000 1:1 msgs/s (round 7).
 */
const STATEMENT_CACHE_SIZE = 512;

/** The worker's side of `postMessage`. */
interface WorkerScope {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReply, transfer?: Transferable[]): void;
  close(): void;
}

/** One `node:sqlite` connection that writes batches in `BEGIN IMMEDIATE` transactions. */
class AppendConnection {
  #db: DatabaseSync;
  #busyTimeoutMs: number;
  #statements = new Map<string, StatementSync>();
  #inTransaction = false;
  #flusher: WalFlusher | undefined;

  /** `walSyncMs` 0: no background WAL syncs; `warn` gets a line for the server's log. */
  constructor(path: string, busyTimeoutMs: number, walSyncMs: number, warn: (m: string) => void) {
    this.#db = new DatabaseSync(path);
    this.#busyTimeoutMs = busyTimeoutMs;
    if (walSyncMs > 0) {
      // SQLite names the WAL after the database file.
      const wal = `${path}-wal`;
      this.#flusher = new WalFlusher({
        sync: () => syncDataAt(wal),
        intervalMs: walSyncMs,
        onError: (error) =>
          warn(`Background syncs of ${wal} stopped (SQLite's own syncs go on): ${error}`),
      });
    }
    try {
      // As lib/_sqlite_dialect.ts (journal_mode is WAL already: the main side migrated).
      this.#db.exec("PRAGMA busy_timeout = 0");
      for (const pragma of CONNECTION_PRAGMAS) this.#db.exec(pragma);
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

  /** As the Kysely store's `appendMessages`: one transaction, per item on an item's error. */
  async write(batch: readonly AppendRequest[]): Promise<AppendOutcome[]> {
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
      this.#flusher?.wrote();
      return results;
    } catch (error) {
      if (this.#inTransaction) {
        this.#inTransaction = false;
        this.#db.exec("ROLLBACK");
      }
      throw error;
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

/** Answers the main side's requests one at a time, in order. */
class AppendWorkerHost {
  #scope: WorkerScope;
  #connection: AppendConnection | undefined;
  #queue: Promise<void> = Promise.resolve();

  constructor(scope: WorkerScope) {
    this.#scope = scope;
  }

  listen(): void {
    this.#scope.onmessage = (event) => {
      const request = event.data;
      this.#queue = this.#queue.then(() => this.#answer(request));
    };
  }

  async #answer(request: WorkerRequest): Promise<void> {
    const scope = this.#scope;
    if (request.kind === "open") {
      try {
        this.#connection = new AppendConnection(
          request.path,
          request.busyTimeoutMs,
          request.walSyncMs,
          (message) => scope.postMessage({ kind: "warning", message }),
        );
        scope.postMessage({ kind: "opened" });
      } catch (error) {
        scope.postMessage({ kind: "failed", id: 0, error: toWire(error) });
      }
    } else if (request.kind === "batch") {
      try {
        if (this.#connection === undefined) throw new Error("The append worker has no database");
        const outcomes = encodeOutcomes(
          await this.#connection.write(decodeBatch(request.batch)),
        );
        scope.postMessage({ kind: "done", id: request.id, outcomes }, [outcomes.fresh.buffer]);
      } catch (error) {
        scope.postMessage({ kind: "failed", id: request.id, error: toWire(error) });
      }
    } else {
      try {
        await this.#connection?.close();
      } finally {
        this.#connection = undefined;
        scope.postMessage({ kind: "closed" });
      }
    }
  }
}

new AppendWorkerHost(self as unknown as WorkerScope).listen();
