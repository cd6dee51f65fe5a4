/**
 * The PostgreSQL side of the Kysely store: a `pg` pool configured entirely
 * from the `postgres://` URL (no `PG*` environment variables beyond the two
 * `pg` always reads), int8 returned as JS numbers, and a per-pool
 * `search_path` so tests can isolate in their own schema.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { type Dialect, PostgresDialect } from "kysely";
import pg from "pg";
import { pgAddress } from "./_pg_url.ts";
import { DeadlinePool, type PgPool } from "./_pg_deadline.ts";

const logger = getLogger(["chat", "store"]);

/** `name` if it is a plain lower-case Postgres identifier; else RangeError. */
export function parseSchemaName(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) {
    throw new RangeError(`Invalid Postgres schema name "${name}"`);
  }
  return name;
}

/** Options of {@linkcode postgresDialect}. */
export interface PostgresDialectOptions {
  readonly schema: string;
  readonly poolSize: number;
  /**
   * Once the pool is {@linkcode DeadlinePool.arm}ed, a query that has not
   * answered after this many ms loses its connection, and Postgres's own
   * `statement_timeout` is set a little below it. @default {15000}
   */
  readonly queryDeadlineMs?: number;
}

/**
 * A Kysely dialect on a `pg` pool for `url`, tables in `schema`, and that
 * pool, to {@linkcode DeadlinePool.arm} once migrations are done.
 */
export function postgresDialect(
  url: string,
  options: PostgresDialectOptions,
): { dialect: Dialect; pool: DeadlinePool } {
  // int8 (ids, epoch ms, counts) as JS numbers; all our values fit in 2^53.
  const types = {
    getTypeParser(oid: number, format?: string): unknown {
      if (oid === 20) return Number;
      return pg.types.getTypeParser(oid, format);
    },
  };
  const deadlineMs = options.queryDeadlineMs ?? 15_000;
  const config = pgConnectionConfig(url, options.schema);
  const pool = new pg.Pool({
    ...config,
    // A new connection gets no longer than a query would.
    connectionTimeoutMillis: Math.min(Number(config.connectionTimeoutMillis), deadlineMs),
    // A node that vanishes mid-transaction (power cut, or a socket this side
    // gave up on) would hold its row locks, its conversations' counters among
    // them, until the server's TCP keepalive notices (two hours by default),
    // and every other node's appends to those conversations would wait. Our
    // transactions never sit idle: the server ends one that does.
    options: `${config.options} -c idle_in_transaction_session_timeout=${deadlineMs}`,
    max: options.poolSize,
    types,
  });
  // An idle pooled connection that dies (a Postgres restart, a proxy's idle
  // cut) is reported as the pool's "error" event; unheard, Node's emitter
  // throws it as an uncaught exception and the process exits. The pool has
  // dropped that connection already and opens a new one on the next query.
  pool.on("error", (error: Error) => {
    logger.warn("An idle Postgres connection was lost (it is replaced on next use): {error}", {
      error,
    });
  });
  const deadlinePool = new DeadlinePool(pool as unknown as PgPool, {
    deadlineMs,
    onExpired: (deadlineMs) => {
      logger.warn(
        "A Postgres query had no answer after {deadlineMs} ms; its connection is dropped",
        { deadlineMs },
      );
    },
  });
  return { dialect: new PostgresDialect({ pool: deadlinePool }), pool: deadlinePool };
}

/**
 * The `pg` connection settings for a `postgres://user:password@host:port/db`
 * URL (`?sslmode=` and `?host=` honoured). The URL is the whole
 * configuration: every value `pg` would otherwise read from `PG*`
 * variables is given here, so `pg` reads only `PGBINARY` and
 * `PGREPLICATION` (`--allow-env=PGBINARY,PGREPLICATION`). A missing user
 * means "postgres", a missing password the empty one (trust auth).
 * `schema` becomes the connection's `search_path`.
 */
export function pgConnectionConfig(
  url: string,
  schema = "public",
): Record<string, unknown> {
  const u = new URL(url);
  const user = decodeURIComponent(u.username) || "postgres";
  const sslmode = u.searchParams.get("sslmode");
  const ssl = sslmode === null || sslmode === "disable" || sslmode === "prefer"
    ? false
    : sslmode === "no-verify"
    ? { rejectUnauthorized: false }
    : true;
  const password = decodeURIComponent(u.password);
  return {
    ...pgAddress(url),
    user,
    database: decodeURIComponent(u.pathname.slice(1)) || user,
    // A function, so pg never falls back to PGPASSWORD or ~/.pgpass.
    password: () => Promise.resolve(password),
    options: `-c search_path=${parseSchemaName(schema)}`,
    ssl,
    sslnegotiation: "postgres",
    application_name: "lanchat",
    client_encoding: "UTF8",
    connectionTimeoutMillis: 10_000,
  };
}
