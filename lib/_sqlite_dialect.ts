/**
 * A Kysely dialect for SQLite through Deno's built-in `node:sqlite`: a tiny
 * adapter from `DatabaseSync` to Kysely's `SqliteDatabase`, plus a driver
 * that makes every transaction `BEGIN IMMEDIATE` and waits for a busy
 * database without blocking the event loop.
 *
 * Why not SQLite's own `busy_timeout`: `node:sqlite` is synchronous, so its
 * busy handler would freeze the whole process while another connection holds
 * the write lock, and two connections to one file in the same process (two
 * nodes in one test) would wait on each other until the timeout. The driver
 * sets `busy_timeout=0` and retries a busy statement after a short async
 * sleep, up to `busyTimeoutMs` (5000 by default) in total.
 *
 * @module
 */

import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { CONNECTION_PRAGMAS } from "./_sqlite_pragmas.ts";
import { explainSqliteError } from "./_sqlite_no_space.ts";
import {
  CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  SqliteAdapter,
  type SqliteDatabase,
  SqliteDriver,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type SqliteStatement,
} from "kysely";

/** The values SQLite binds as parameters. */
type SqlValue = null | number | bigint | string | Uint8Array;

/** The slice of a `node:sqlite` statement the adapter uses. */
export interface NodeSqliteStatement {
  columns(): readonly unknown[];
  all(...params: SqlValue[]): unknown[];
  run(
    ...params: SqlValue[]
  ): { changes: number | bigint; lastInsertRowid: number | bigint };
  iterate(...params: SqlValue[]): IterableIterator<unknown>;
}

/** The slice of `node:sqlite`'s `DatabaseSync` the adapter uses. */
export interface NodeSqliteDatabase {
  prepare(sql: string): NodeSqliteStatement;
  exec(sql: string): void;
  close(): void;
}

/** Options for {@linkcode sqliteDialect}. */
export interface SqliteDialectOptions {
  /** How long a statement waits for another connection's write lock. @default {5000} */
  busyTimeoutMs?: number;
  /**
   * Durable acks: `synchronous = FULL`, every commit synced before it
   * returns (the append path's background syncs do not cover this
   * connection). @default {false}
   */
  durable?: boolean;
}

/** How many prepared statements one connection keeps for reuse. */
const STATEMENT_CACHE_SIZE = 256;

/** Adapts a `node:sqlite` database to the shape Kysely's SQLite driver calls. */
export class NodeSqliteAdapter implements SqliteDatabase {
  #db: NodeSqliteDatabase;
  /** Prepared statements by SQL text, least recently used first (Map keeps insertion order). */
  #statements = new Map<string, SqliteStatement>();

  /** Wrap an open database; {@linkcode close} closes it. */
  constructor(db: NodeSqliteDatabase) {
    this.#db = db;
  }

  /**
   * Prepare `sql`, reusing an earlier statement for the same text: Kysely
   * compiles the same few queries on every message, and preparing is a large
   * part of a store call. Safe because Kysely's driver runs one query at a
   * time on this connection; SQLite re-prepares a statement itself after a
   * schema change. Least recently used goes first, so the many one-off texts
   * of batch appends (one per batch size) do not push out the hot queries.
   */
  prepare(sql: string): SqliteStatement {
    const cached = this.#statements.get(sql);
    if (cached !== undefined) {
      this.#statements.delete(sql);
      this.#statements.set(sql, cached);
      return cached;
    }
    const stmt = this.#db.prepare(sql);
    const statement: SqliteStatement = {
      reader: stmt.columns().length > 0,
      all: (params) => stmt.all(...(params as SqlValue[])),
      run: (params) => stmt.run(...(params as SqlValue[])),
      iterate: (params) => stmt.iterate(...(params as SqlValue[])),
    };
    if (this.#statements.size >= STATEMENT_CACHE_SIZE) {
      const oldest = this.#statements.keys().next();
      if (!oldest.done) this.#statements.delete(oldest.value);
    }
    this.#statements.set(sql, statement);
    return statement;
  }

  /** Close the database. */
  close(): void {
    this.#statements.clear();
    this.#db.close();
  }
}

/** Whether `error` is SQLite's SQLITE_BUSY ("database is locked"). */
export function isBusyError(error: unknown): boolean {
  return error instanceof Error && /database is locked/i.test(error.message);
}

/**
 * The folder whose disk holds the database file at `path`, to tell a full
 * disk behind an I/O error (`_sqlite_no_space.ts`); none for `:memory:`.
 */
function databaseFolder(path: string): string | undefined {
  return path === ":memory:" || path.startsWith("file:") ? undefined : dirname(path);
}

/**
 * Run `fn`, retrying after a short async sleep while the database is busy.
 * Any other error is thrown, as a full disk if it is one (`folder`).
 */
async function retryWhileBusy<T>(
  fn: () => T | Promise<T>,
  timeoutMs: number,
  folder: string | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let wait = 1;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (!isBusyError(error) || Date.now() >= deadline) {
        throw await explainSqliteError(error, folder);
      }
      const ms = Math.min(wait, Math.max(1, deadline - Date.now()));
      await new Promise((resolve) => setTimeout(resolve, ms * Math.random()));
      wait = Math.min(wait * 2, 50);
    }
  }
}

/** Open `path` and apply the connection pragmas (WAL, foreign keys, …). */
async function openDatabase(
  path: string,
  busyTimeoutMs: number,
  durable: boolean,
): Promise<NodeSqliteAdapter> {
  const folder = databaseFolder(path);
  const db: NodeSqliteDatabase = new DatabaseSync(path);
  try {
    db.exec("PRAGMA busy_timeout = 0");
    await retryWhileBusy(
      () => db.exec("PRAGMA journal_mode = WAL"),
      busyTimeoutMs,
      folder,
    );
    for (const pragma of CONNECTION_PRAGMAS) db.exec(pragma);
    if (durable) db.exec("PRAGMA synchronous = FULL");
  } catch (error) {
    db.close();
    // A new `-shm` index needs space: on a full disk the first read fails.
    throw await explainSqliteError(error, folder);
  }
  return new NodeSqliteAdapter(db);
}

/**
 * Delegates to Kysely's connection, retrying statements that hit
 * SQLITE_BUSY; an I/O error that came with a full disk is thrown as one.
 */
class BusyRetryConnection implements DatabaseConnection {
  #inner: DatabaseConnection;
  #timeoutMs: number;
  #folder: string | undefined;

  constructor(inner: DatabaseConnection, timeoutMs: number, folder: string | undefined) {
    this.#inner = inner;
    this.#timeoutMs = timeoutMs;
    this.#folder = folder;
  }

  executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    return retryWhileBusy(
      () => this.#inner.executeQuery<R>(compiledQuery),
      this.#timeoutMs,
      this.#folder,
    );
  }

  streamQuery<R>(
    compiledQuery: CompiledQuery,
    chunkSize: number,
  ): AsyncIterableIterator<QueryResult<R>> {
    return this.#inner.streamQuery<R>(compiledQuery, chunkSize);
  }
}

/**
 * Kysely's SQLite driver with `BEGIN IMMEDIATE` transactions: a transaction
 * takes the write lock up front, so two processes sharing one file never
 * deadlock upgrading a read lock to a write lock.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  #connection: BusyRetryConnection | undefined;
  #timeoutMs: number;
  #folder: string | undefined;
  /** Whether Kysely has initialised the driver (opened the database). */
  #ready = false;
  /** Whether a query or transaction holds the one connection. */
  #held = false;
  /** Who waits for it, first come first served; each is handed it in turn. */
  #waiters: (() => void)[] = [];

  constructor(path: string, timeoutMs: number, durable: boolean) {
    super({ database: () => openDatabase(path, timeoutMs, durable) });
    this.#timeoutMs = timeoutMs;
    this.#folder = databaseFolder(path);
  }

  /**
   * The one connection, once every earlier holder has released it. This
   * queue replaces Kysely's mutex for single-connection dialects, which wakes
   * every waiter on each release and all but one wait again: with hundreds
   * of connects waiting during a connect storm that was work and garbage
   * growing with the square of the queue (issue #7).
   */
  override async acquireConnection(): Promise<DatabaseConnection> {
    if (this.#held) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    else this.#held = true;
    try {
      const inner = await super.acquireConnection();
      this.#connection ??= new BusyRetryConnection(inner, this.#timeoutMs, this.#folder);
      return this.#connection;
    } catch (error) {
      this.#handOn();
      throw error;
    }
  }

  override releaseConnection(): Promise<void> {
    this.#handOn();
    return Promise.resolve();
  }

  override async init(): Promise<void> {
    await super.init();
    this.#ready = true;
  }

  /** See {@linkcode SqliteReads.rows}: the queue and busy retry of every query, without Kysely's executor. */
  async rows<R>(sql: string, params: readonly unknown[]): Promise<R[]> {
    if (!this.#ready) throw new Error("The SQLite database is not open yet (run a query first)");
    const connection = await this.acquireConnection();
    try {
      return (await connection.executeQuery<R>(CompiledQuery.raw(sql, [...params]))).rows;
    } finally {
      this.#handOn();
    }
  }

  /** Give the connection to the next waiter, or mark it free. */
  #handOn(): void {
    const next = this.#waiters.shift();
    if (next === undefined) this.#held = false;
    else next();
  }

  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("BEGIN IMMEDIATE"));
  }

  /**
   * After SQLITE_FULL, IOERR, NOMEM (or BUSY mid-statement) SQLite may have
   * rolled the transaction back itself; a ROLLBACK then fails with "no
   * transaction is active", and Kysely would throw that instead of the
   * error that mattered (a full disk answered as an internal error).
   */
  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    try {
      await connection.executeQuery(CompiledQuery.raw("ROLLBACK"));
    } catch (error) {
      if (!(error instanceof Error && /no transaction is active/i.test(error.message))) throw error;
    }
  }
}

/**
 * SQLite supports transactional DDL; saying so makes Kysely's migrator run
 * each migration batch inside one `BEGIN IMMEDIATE` transaction, which
 * serialises two processes migrating the same file at once.
 */
class TransactionalSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }

  /**
   * Still one connection: saying "multiple" only turns Kysely's own mutex
   * off, because {@linkcode ImmediateSqliteDriver} queues its users itself.
   */
  override get supportsMultipleConnections(): boolean {
    return true;
  }
}

/**
 * Reads that skip Kysely's executor on a SQLite dialect. Why: the connect
 * path's three store reads spent 15 – 20 % of their time, and made most of
 * their garbage (some 10 KiB per connect), in the executor's layers
 * (connection provider, runtime driver, result transform, each an async
 * step; issue #7). They still take their turn on the connection's queue
 * and retry a busy database like any query.
 */
export interface SqliteReads {
  /** The rows of one read statement with `params`; after the database is open. */
  rows<R>(sql: string, params: readonly unknown[]): Promise<R[]>;
}

/** A Kysely dialect for the SQLite file at `path` (":memory:" allowed). */
class NodeSqliteDialect implements Dialect, SqliteReads {
  #path: string;
  #timeoutMs: number;
  #durable: boolean;
  #driver: ImmediateSqliteDriver | undefined;

  constructor(path: string, timeoutMs: number, durable: boolean) {
    this.#path = path;
    this.#timeoutMs = timeoutMs;
    this.#durable = durable;
  }

  createDriver(): Driver {
    this.#driver = new ImmediateSqliteDriver(this.#path, this.#timeoutMs, this.#durable);
    return this.#driver;
  }

  rows<R>(sql: string, params: readonly unknown[]): Promise<R[]> {
    if (this.#driver === undefined) {
      return Promise.reject(
        new Error("The SQLite dialect has no driver yet (make a Kysely first)"),
      );
    }
    return this.#driver.rows<R>(sql, params);
  }

  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new TransactionalSqliteAdapter();
  }

  // deno-lint-ignore no-explicit-any
  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}

/**
 * A Kysely dialect for the SQLite database at `path` (a file, or
 * ":memory:"). The file is opened on the first query with WAL journaling,
 * `synchronous=NORMAL` and foreign keys on; integers come back as numbers.
 */
export function sqliteDialect(
  path: string,
  options: SqliteDialectOptions = {},
): Dialect & SqliteReads {
  return new NodeSqliteDialect(path, options.busyTimeoutMs ?? 5000, options.durable ?? false);
}
