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

const logger = getLogger(["chat", "store"]);

/** `name` if it is a plain lower-case Postgres identifier; else RangeError. */
export function parseSchemaName(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) {
    throw new RangeError(`Invalid Postgres schema name "${name}"`);
  }
  return name;
}

/** A Kysely dialect on a `pg` pool for `url`, tables in `schema`. */
export function postgresDialect(
  url: string,
  options: { schema: string; poolSize: number },
): Dialect {
  // int8 (ids, epoch ms, counts) as JS numbers; all our values fit in 2^53.
  const types = {
    getTypeParser(oid: number, format?: string): unknown {
      if (oid === 20) return Number;
      return pg.types.getTypeParser(oid, format);
    },
  };
  const pool = new pg.Pool({
    ...pgConnectionConfig(url, options.schema),
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
  return new PostgresDialect({ pool });
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
