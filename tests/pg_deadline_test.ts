/**
 * A Postgres host that vanishes without a reset must not hold the node's
 * appends for the ~15 minutes TCP takes to give up: a query past the
 * deadline loses its connection and fails as retryable, and the resend
 * after the host is back is stored once. Unit tests of the deadline on a
 * fake pool; the end-to-end ones run when CHAT_TEST_PG_URL is set.
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { Kysely, sql } from "kysely";
import {
  DeadlinePool,
  isConnectionLoss,
  isStatementTimeout,
  type PgClient,
  type PgPool,
  statementTimeoutFor,
} from "../lib/_pg_deadline.ts";
import pg from "pg";
import { pgConnectionConfig, postgresDialect } from "../lib/_pg_dialect.ts";
import { BusyError } from "../lib/errors.ts";
import { delay, pgUrl, startChatServer } from "./_chat_helpers.ts";
import { captureLogs } from "./_logs.ts";
import { TcpProxy } from "./_tcp_proxy.ts";

/** A pooled client whose queries answer only when told to. */
class FakeClient implements PgClient {
  readonly pending: PromiseWithResolvers<{ command: "SELECT"; rowCount: number; rows: [] }>[] = [];
  released: boolean[] = [];
  destroyed = 0;
  readonly connection = { stream: { destroy: () => void this.destroyed++ } };
  /** Session settings made (`set …`), answered at once. */
  readonly settings: string[] = [];

  query(sql: string) {
    if (sql.startsWith("set ")) {
      this.settings.push(sql);
      return Promise.resolve({ command: "SELECT" as const, rowCount: 0, rows: [] as [] });
    }
    const answer = Promise.withResolvers<{ command: "SELECT"; rowCount: number; rows: [] }>();
    this.pending.push(answer);
    return answer.promise;
  }
  release(destroy?: boolean): void {
    this.released.push(destroy === true);
  }
  end(): void {}
  on(): void {}
}

function fakePool(client: FakeClient): PgPool {
  return { connect: () => Promise.resolve(client), end: () => Promise.resolve(), options: {} };
}

Deno.test("a query past the deadline fails as retryable, and its connection leaves the pool", async () => {
  const client = new FakeClient();
  const expired: number[] = [];
  const pool = new DeadlinePool(fakePool(client), {
    deadlineMs: 50,
    onExpired: (ms) => expired.push(ms),
  });
  pool.arm();
  const conn = await pool.connect();
  const started = Date.now();
  await rejects(conn.query("select 1", []), (e) => {
    ok(e instanceof BusyError, String(e));
    strictEqual(e.code, "unavailable");
    strictEqual(e.retryable, true);
    return true;
  });
  ok(Date.now() - started < 1000);
  strictEqual(client.destroyed, 1, "the socket is destroyed");
  deepStrictEqual(expired, [50]);
  // Kysely's rollback on the same connection fails at once, without pg.
  await rejects(conn.query("rollback", []), BusyError);
  strictEqual(client.pending.length, 1);
  conn.release();
  deepStrictEqual(client.released, [true], "released for removal, not to the idle list");
});

Deno.test("a query that answers in time is not touched, and none is timed before arm()", async () => {
  const client = new FakeClient();
  const pool = new DeadlinePool(fakePool(client), { deadlineMs: 30, onExpired: () => {} });
  const conn = await pool.connect();
  // Not armed (migrations): a slow query keeps waiting.
  const slow = conn.query("alter table x", []);
  await delay(80);
  client.pending[0]!.resolve({ command: "SELECT", rowCount: 0, rows: [] });
  deepStrictEqual((await slow).rows, []);
  pool.arm();
  const quick = conn.query("select 1", []);
  client.pending[1]!.resolve({ command: "SELECT", rowCount: 0, rows: [] });
  deepStrictEqual((await quick).rows, []);
  await delay(60);
  strictEqual(client.destroyed, 0);
  conn.release();
  deepStrictEqual(client.released, [false]);
  deepStrictEqual(client.settings, [], "no statement_timeout for the migrations");
  strictEqual(await pool.connect(), conn, "the same wrapper for the same pooled client");
  deepStrictEqual(client.settings, ["set statement_timeout = 24"], "set on checkout after arm()");
  conn.release();
  await pool.connect();
  deepStrictEqual(client.settings, ["set statement_timeout = 24"], "once per connection");
});

Deno.test("statementTimeoutFor() leaves the server a second (at most a fifth) before the client", () => {
  deepStrictEqual([15_000, 1000, 30].map(statementTimeoutFor), [14_000, 800, 24]);
});

Deno.test("isConnectionLoss tells a lost connection from a failed statement, isStatementTimeout a cancel", () => {
  const coded = (code: string, message = "x") => Object.assign(new Error(message), { code });
  for (
    const lost of [
      coded("08006"),
      coded("57P01", "terminating connection due to administrator command"),
      coded("ECONNRESET"),
      coded("EPIPE"),
      new Error("Connection terminated unexpectedly"),
      new Error("Client has encountered a connection error and is not queryable"),
    ]
  ) ok(isConnectionLoss(lost), lost.message);
  for (
    const statement of [
      coded("23505", "duplicate key"),
      coded("40001"),
      coded("57014", "canceling statement due to statement timeout"),
      new TypeError("Cannot convert"),
      "Connection terminated",
    ]
  ) ok(!isConnectionLoss(statement), String(statement));
  ok(isStatementTimeout(coded("57014", "canceling statement due to statement timeout")));
  ok(!isStatementTimeout(coded("57P01")) && !isStatementTimeout("57014"));
});

const url = pgUrl();

function proxied(proxy: TcpProxy): string {
  const u = new URL(url!);
  u.hostname = "127.0.0.1";
  u.port = String(proxy.port);
  return u.href;
}

function target(): Deno.ConnectOptions {
  const u = new URL(url!);
  return { hostname: u.hostname, port: Number(u.port || 5432) };
}

Deno.test({
  name: "Postgres vanishes mid-conversation: the send fails as retryable within the deadline, " +
    "and its resend after the host is back is delivered once",
  ignore: url === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using logs = await captureLogs();
    await using proxy = TcpProxy.start(target());
    await using srv = await startChatServer({
      store: "postgres",
      pg: { url: proxied(proxy), queryDeadlineMs: 1000 },
    });
    const ann = await srv.user("Ann");
    const bob = await srv.user("Bob");
    await srv.store.addFriendship(ann.id, bob.id, 0);
    const a = await srv.connect(ann);
    const b = await srv.connect(bob);
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: "before", cid: "p1" });
    await a.waitFor((f) => f["cmd"] === 20 && f["cid"] === "p1");

    proxy.freeze();
    const started = Date.now();
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: "during", cid: "p2" });
    const [refused] = await a.waitFor((f) => f["cid"] === "p2", 1, 10_000);
    const waited = Date.now() - started;
    strictEqual(refused!["code"], "unavailable", JSON.stringify(refused));
    strictEqual(refused!["retryable"], true);
    ok(waited >= 900 && waited < 5000, `refused after ${waited} ms`);
    // The readiness check's query is bounded the same way.
    await rejects(srv.store.ping(), BusyError);
    ok(
      logs.records.some((r) =>
        String(r.rawMessage).startsWith("A Postgres query had no answer after {deadlineMs} ms")
      ),
    );

    proxy.thaw();
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: "during", cid: "p2" });
    const [ack] = await a.waitFor((f) => f["cmd"] === 20 && f["cid"] === "p2", 1, 10_000);
    const got = await b.waitFor((f) => f["cmd"] === 10, 2);
    deepStrictEqual(got.map((f) => [f["content"], f["seq"]]), [["before", 1], ["during", 2]]);
    strictEqual(ack!["seq"], 2);
    const stored = await srv.store.listMessages(
      got[0]!["conv"] as string,
      { afterSeq: 0, limit: 10 },
    );
    deepStrictEqual(stored.map((m) => m.content), ["before", "during"]);
  },
});

Deno.test({
  name: "a Postgres connection cut mid-query fails that query as retryable; the next one " +
    "reconnects",
  ignore: url === undefined,
  async fn() {
    await using proxy = TcpProxy.start(target());
    const { dialect, pool } = postgresDialect(proxied(proxy), { schema: "public", poolSize: 2 });
    pool.arm();
    const db = new Kysely<Record<string, never>>({ dialect });
    try {
      const slow = sql`select pg_sleep(2)`.execute(db);
      slow.catch(() => {});
      for (let i = 0; i < 100 && proxy.connections === 0; i++) await delay(10);
      await delay(200);
      proxy.cut();
      await rejects(slow, (e) => {
        ok(e instanceof BusyError, String(e));
        strictEqual(e.retryable, true);
        ok(String((e.cause as Error).message).startsWith("Connection terminated"), String(e.cause));
        return true;
      });
      // An unheard "error" event of the checked-out client would surface here.
      await delay(200);
      const again = await sql<{ one: number }>`select 1 as one`.execute(db);
      deepStrictEqual(again.rows, [{ one: 1 }]);
    } finally {
      await db.destroy();
    }
  },
});

Deno.test({
  name: "a node that vanishes mid-transaction does not hold its row locks: Postgres ends the " +
    "idle transaction and another connection's update goes through",
  ignore: url === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using proxy = TcpProxy.start(target());
    const table = `t_lock_${crypto.randomUUID().replaceAll("-", "")}`;
    const admin = new pg.Client(pgConnectionConfig(url!));
    await admin.connect();
    const { dialect, pool } = postgresDialect(proxied(proxy), {
      schema: "public",
      poolSize: 2,
      queryDeadlineMs: 1000,
    });
    pool.arm();
    const db = new Kysely<Record<string, never>>({ dialect });
    try {
      await admin.query(`create table ${table} (id int primary key, n int not null)`);
      await admin.query(`insert into ${table} values (1, 0)`);
      const vanished = db.transaction().execute(async (tx) => {
        await sql.raw(`update ${table} set n = n + 1 where id = 1`).execute(tx);
        // The node is gone from the network, its transaction open and the row locked.
        proxy.freeze();
        await sql`select 1`.execute(tx);
      });
      vanished.catch(() => {});
      for (let i = 0; i < 200 && proxy.connections === 0; i++) await delay(5);
      await delay(100);
      const started = Date.now();
      const other = admin.query(`update ${table} set n = n + 10 where id = 1`);
      const waited = await Promise.race([
        other.then(() => Date.now() - started),
        delay(8000).then(() => -1),
      ]);
      ok(waited >= 0, "the other update still waits for the vanished transaction's lock");
      await rejects(vanished, BusyError);
      const { rows } = await admin.query(`select n from ${table} where id = 1`);
      deepStrictEqual(rows, [{ n: 10 }], "the vanished transaction was rolled back");
    } finally {
      proxy.thaw();
      await db.destroy().catch(() => {});
      await admin.query(`drop table if exists ${table}`);
      await admin.end();
    }
  },
});

Deno.test({
  name: "a statement blocked on a row lock past the deadline is cancelled by Postgres itself: " +
    "the caller gets the retryable error, and the release of the lock applies nothing later",
  ignore: url === undefined,
  async fn() {
    const table = `t_wait_${crypto.randomUUID().replaceAll("-", "")}`;
    const holder = new pg.Client(pgConnectionConfig(url!));
    const observer = new pg.Client(pgConnectionConfig(url!));
    await holder.connect();
    await observer.connect();
    const { dialect, pool } = postgresDialect(url!, {
      schema: "public",
      poolSize: 1,
      queryDeadlineMs: 1000,
    });
    pool.arm();
    const db = new Kysely<Record<string, never>>({ dialect });
    /** Backends still running the blocked update (the observer's own query mentions it too). */
    const waiting = async () =>
      (await observer.query(
        `select count(*)::int as n from pg_stat_activity
          where state = 'active' and query like $1 and pid <> pg_backend_pid()`,
        [`update ${table} set n = n + 1%`],
      )).rows[0].n;
    try {
      await holder.query(`create table ${table} (id int primary key, n int not null)`);
      await holder.query(`insert into ${table} values (1, 0)`);
      await holder.query("begin");
      await holder.query(`update ${table} set n = n + 10 where id = 1`);
      const started = Date.now();
      await rejects(sql.raw(`update ${table} set n = n + 1 where id = 1`).execute(db), (e) => {
        ok(e instanceof BusyError, String(e));
        strictEqual(e.retryable, true);
        strictEqual((e.cause as { code?: unknown } | undefined)?.code, "57014", String(e.cause));
        return true;
      });
      const waited = Date.now() - started;
      // The cause (57014) shows the server gave up first; the deadline's error has none.
      ok(waited >= 700 && waited < 5000, `refused after ${waited} ms`);
      strictEqual(await waiting(), 0, "nothing of it runs on the server any more");
      await holder.query("commit");
      await delay(200);
      const { rows } = await holder.query(`select n from ${table} where id = 1`);
      deepStrictEqual(rows, [{ n: 10 }], "the given-up update was not applied after all");
      // The connection was not given up: it answers the next query.
      deepStrictEqual((await sql<{ one: number }>`select 1 as one`.execute(db)).rows, [{ one: 1 }]);
    } finally {
      await holder.query("rollback").catch(() => {});
      await db.destroy();
      await holder.query(`drop table if exists ${table}`);
      await holder.end();
      await observer.end();
    }
  },
});
