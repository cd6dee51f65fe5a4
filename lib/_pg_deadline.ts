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

  constructor(client: PgClient, pool: DeadlinePool, options: DeadlinePoolOptions) {
    this.#client = client;
    this.#pool = pool;
    this.#options = options;
    // A socket that dies while the connection is checked out is emitted as
    // an "error" event after its query failed; the pool listens only while
    // the connection is idle, and an unheard "error" is thrown.
    client.on("error", () => {});
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
