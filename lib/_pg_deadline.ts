/**
 * A deadline on every Postgres query. `pg` waits for an answer as long as
 * the socket stays open, and a database host that vanishes without a reset
 * (power cut, cable pulled, a firewall dropping packets) keeps it open until
 * TCP gives up, some 15 minutes, while the message batch on that connection
 * and every later append wait behind it. Past the deadline the connection
 * is destroyed, its query (and anything else asked of it) fails with a
 * {@linkcode BusyError} the client may retry (a resent message keeps its
 * `cid`, so one that did commit is not stored twice), and the pool opens a
 * new connection for the next query.
 *
 * The client giving up does not stop the server: a statement waiting for a
 * row lock would go on waiting, and apply its write once it got the lock,
 * after its caller was told it failed. So armed connections also set
 * Postgres's `statement_timeout` a little below the deadline: the server
 * cancels the statement first (SQLSTATE 57014), the caller gets the same
 * retryable error, and the connection stays usable.
 *
 * @module
 */

import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from "kysely";
import { BusyError } from "./errors.ts";

/** The slice of `pg`'s pooled client this needs. */
export interface PgClient {
  query(sql: string, params: readonly unknown[]): Promise<PostgresQueryResult<unknown>>;
  release(destroy?: boolean): void;
  end(): void;
  on(event: "error", listener: (error: Error) => void): unknown;
  /** `pg`'s connection; its socket is destroyed past the deadline. */
  readonly connection?: { readonly stream?: { destroy(): void } };
}

/** The slice of `pg`'s pool this needs. */
export interface PgPool {
  connect(): Promise<PgClient>;
  end(): Promise<void>;
  readonly options: object;
}

/** Options of {@linkcode DeadlinePool}. */
export interface DeadlinePoolOptions {
  /** A query that has not answered after this many ms loses its connection. */
  readonly deadlineMs: number;
  /** Told once per connection given up. */
  readonly onExpired: (deadlineMs: number) => void;
  /**
   * Postgres's `statement_timeout` for armed connections, ms; below
   * `deadlineMs`, so the server ends a statement before the client gives up
   * on it. @default {see statementTimeoutFor}
   */
  readonly statementTimeoutMs?: number;
}

/**
 * The server-side `statement_timeout` for a client deadline: one second
 * (at most a fifth of it) less, so the server's cancel arrives first.
 */
export function statementTimeoutFor(deadlineMs: number): number {
  return Math.max(1, Math.round(deadlineMs - Math.min(1000, deadlineMs / 5)));
}

/** Rejected with by a query past the deadline, and by later ones on its connection. */
function storeTimeout(deadlineMs: number): BusyError {
  return new BusyError(
    `The database did not answer within ${deadlineMs / 1000} s; try again shortly`,
    5,
  );
}

/**
 * A Kysely `PostgresPool` over `pg`'s pool that puts a deadline on each
 * query, once {@linkcode arm}ed: migrations run before it, since one may
 * rewrite a large table.
 */
export class DeadlinePool implements PostgresPool {
  readonly #pool: PgPool;
  readonly #options: DeadlinePoolOptions;
  readonly #clients = new WeakMap<PgClient, DeadlineClient>();
  #armed = false;

  constructor(pool: PgPool, options: DeadlinePoolOptions) {
    this.#pool = pool;
    this.#options = options;
  }

  /** Start timing queries. */
  arm(): void {
    this.#armed = true;
  }

  get armed(): boolean {
    return this.#armed;
  }

  async connect(): Promise<PostgresPoolClient> {
    let client: PgClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      // At start-up the cause itself is what the operator needs to see.
      if (!this.#armed) throw error;
      throw new BusyError("The database cannot be reached; try again shortly", 5, {
        cause: error,
      });
    }
    let wrapped = this.#clients.get(client);
    if (wrapped === undefined) {
      wrapped = new DeadlineClient(client, this, this.#options);
      this.#clients.set(client, wrapped);
    }
    if (this.#armed) {
      try {
        await wrapped.limitStatements();
      } catch (error) {
        wrapped.release(true);
        throw error;
      }
    }
    return wrapped;
  }

  end(): Promise<void> {
    return this.#pool.end();
  }

  get options(): object {
    return this.#pool.options;
  }
}

class DeadlineClient implements PostgresPoolClient {
  readonly #client: PgClient;
  readonly #pool: DeadlinePool;
  readonly #options: DeadlinePoolOptions;
  #expired = false;
  #broken = false;
  /** Whether this connection's `statement_timeout` is set (once, after arm). */
  #limited = false;

  constructor(client: PgClient, pool: DeadlinePool, options: DeadlinePoolOptions) {
    this.#client = client;
    this.#pool = pool;
    this.#options = options;
    // A socket that dies while the connection is checked out is emitted as
    // an "error" event after its query failed; the pool listens only while
    // the connection is idle, and an unheard "error" is thrown.
    client.on("error", () => {});
  }

  /**
   * Set the server's `statement_timeout` on this connection, once. Not at
   * connect: a connection made for the migrations (which may run long, and
   * wait for another node's migration lock) is reused afterwards. A session
   * setting, made outside any transaction, so no rollback undoes it.
   */
  async limitStatements(): Promise<void> {
    if (this.#limited) return;
    const ms = this.#options.statementTimeoutMs ?? statementTimeoutFor(this.#options.deadlineMs);
    await this.query(`set statement_timeout = ${Math.round(ms)}`, []);
    this.#limited = true;
  }

  query<R>(sql: string, params: readonly unknown[]): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(
    sql: string | PostgresCursor<R>,
    params?: readonly unknown[],
  ): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    // The store streams nothing; a cursor would need its own deadline.
    if (typeof sql !== "string") throw new TypeError("Cursors are not supported here");
    const { deadlineMs } = this.#options;
    if (this.#expired) return Promise.reject(storeTimeout(deadlineMs));
    const answer = this.#client.query(sql, params ?? []) as Promise<PostgresQueryResult<R>>;
    if (!this.#pool.armed) return answer;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#expire();
        reject(storeTimeout(deadlineMs));
      }, deadlineMs);
    });
    // The destroyed socket fails `answer` too; nobody waits for it then.
    answer.catch(() => {});
    return Promise.race([answer.catch(this.#lost), expired]).finally(() => clearTimeout(timer));
  }

  /** A lost connection is the database's outage, not the query's fault: retryable. */
  #lost = (error: unknown): never => {
    if (isStatementTimeout(error)) {
      // The server ended the statement (see the module doc); the connection is fine.
      throw new BusyError("The database was too busy to answer in time; try again shortly", 5, {
        cause: error,
      });
    }
    if (!isConnectionLoss(error)) throw error;
    // pg may still count it usable (an error message came before the close).
    this.#broken = true;
    throw new BusyError("The connection to the database was lost; try again shortly", 5, {
      cause: error,
    });
  };

  #expire(): void {
    if (this.#expired) return;
    this.#expired = true;
    this.#options.onExpired(this.#options.deadlineMs);
    this.#client.connection?.stream?.destroy();
  }

  release(destroy?: boolean): void {
    // A given-up connection never goes back to the pool's idle list.
    this.#client.release(destroy === true || this.#expired || this.#broken);
  }

  end(): void {
    this.#client.end();
  }
}

/**
 * Whether `error` is Postgres cancelling a statement (SQLSTATE 57014
 * query_canceled): its `statement_timeout`, or a `pg_cancel_backend`. The
 * statement had no effect, and a retry may well succeed.
 */
export function isStatementTimeout(error: unknown): boolean {
  return error instanceof Error && (error as { code?: unknown }).code === "57014";
}

/**
 * Whether `error` means the connection failed rather than the statement:
 * SQLSTATE class 08 (connection exception) or 57P01 – 57P03 (the server shut
 * down or is starting), a socket error (`ECONNRESET`, `EPIPE` …), or `pg`'s
 * own words for a closed connection.
 */
export function isConnectionLoss(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") {
    // First: "EPIPE" has the shape of a SQLSTATE too, but no SQLSTATE class starts with "E".
    if (/^E[A-Z]+$/.test(code)) return true;
    return /^(08|57P0[1-3])/.test(code);
  }
  return /^Connection terminated|is not queryable$/.test(error.message);
}
