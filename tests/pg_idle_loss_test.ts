/**
 * A Postgres connection that dies while idle in the pool (a Postgres
 * restart, `pg_terminate_backend`, a proxy cutting idle connections) must
 * not take the node down: `pg`'s pool reports it as an "error" event, which
 * Node's emitter throws as an uncaught exception when nobody listens.
 * Runs when CHAT_TEST_PG_URL is set (`.ci/run` sets it).
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { Kysely, sql } from "kysely";
import pg from "pg";
import { pgConnectionConfig, postgresDialect } from "../lib/_pg_dialect.ts";
import { pgUrl } from "./_chat_helpers.ts";
import { captureLogs } from "./_logs.ts";

const url = pgUrl();

Deno.test({
  name: "a pooled Postgres connection killed while idle is logged and replaced, not thrown",
  ignore: url === undefined,
  async fn() {
    await using logs = await captureLogs();
    const db = new Kysely<Record<string, never>>({
      dialect: postgresDialect(url!, { schema: "public", poolSize: 2 }).dialect,
    });
    // The same URL-only settings as the store (pg would read PG* variables otherwise).
    const admin = new pg.Client(pgConnectionConfig(url!));
    await admin.connect();
    try {
      const first = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db);
      const pid = first.rows[0]!.pid;
      // The connection is idle in the pool now; kill it from outside.
      await admin.query("select pg_terminate_backend($1)", [pid]);
      for (let i = 0; i < 50 && logs.records.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      deepStrictEqual(
        logs.records.map((r) => String(r.rawMessage)),
        ["An idle Postgres connection was lost (it is replaced on next use): {error}"],
      );
      const again = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db);
      strictEqual(again.rows[0]!.pid !== pid, true, "a new connection");
    } finally {
      await admin.end();
      await db.destroy();
    }
  },
});
