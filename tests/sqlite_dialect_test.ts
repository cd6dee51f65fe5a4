import assert from "node:assert/strict";
import { Kysely, sql } from "kysely";
import { sqliteDialect } from "../lib/_sqlite_dialect.ts";

// deno-lint-ignore no-explicit-any
type AnyDb = Kysely<any>;

async function withDb(fn: (db: AnyDb) => Promise<void>): Promise<void> {
  const db: AnyDb = new Kysely({ dialect: sqliteDialect(":memory:") });
  try {
    await sql`create table t (x integer not null)`.execute(db);
    await fn(db);
  } finally {
    await db.destroy();
  }
}

async function count(db: AnyDb): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*) as n from t`.execute(db);
  return Number(rows[0]!.n);
}

Deno.test("SQLite dialect: reads queued behind an open transaction never see its rows", async () => {
  await withDb(async (db) => {
    const order: string[] = [];
    const trx = db.transaction().execute(async (tx) => {
      await sql`insert into t (x) values (1)`.execute(tx);
      // Hold the one connection across event-loop turns while the reads queue up.
      await new Promise((r) => setTimeout(r, 30));
      order.push("trx");
      throw new Error("roll back");
    });
    const reads = Array.from({ length: 50 }, async () => {
      const n = await count(db);
      order.push("read");
      return n;
    });
    await assert.rejects(trx, /roll back/);
    assert.deepEqual(await Promise.all(reads), Array(50).fill(0));
    assert.equal(order[0], "trx", "no read ran inside the transaction");
  });
});

Deno.test("SQLite dialect: the connection goes to waiters in arrival order, failures included", async () => {
  await withDb(async (db) => {
    const done: number[] = [];
    const queries = Array.from({ length: 200 }, async (_, i) => {
      try {
        if (i % 7 === 3) await sql`select * from no_such_table`.execute(db);
        else await sql`insert into t (x) values (${i})`.execute(db);
      } catch {
        // A failing query must hand the connection on like any other.
      }
      done.push(i);
    });
    await Promise.all(queries);
    assert.deepEqual(done, Array.from({ length: 200 }, (_, i) => i));
    const { rows } = await sql<{ x: number }>`select x from t order by rowid`.execute(db);
    const inserted = rows.map((r) => Number(r.x));
    assert.deepEqual(inserted, done.filter((i) => i % 7 !== 3), "inserts ran in arrival order");
    assert.equal(await count(db), inserted.length, "nothing waits after the last one");
  });
});

Deno.test("SQLite dialect: direct reads take their turn on the queue, and need an open database", async () => {
  const dialect = sqliteDialect(":memory:");
  await assert.rejects(dialect.rows("select 1", []), /no driver yet/);
  const db: AnyDb = new Kysely({ dialect });
  try {
    await assert.rejects(dialect.rows("select 1", []), /not open yet/);
    await sql`create table t (x integer not null)`.execute(db);
    let inserted!: () => void;
    const insertDone = new Promise<void>((r) => inserted = r);
    const trx = db.transaction().execute(async (tx) => {
      await sql`insert into t (x) values (1)`.execute(tx);
      inserted();
      await new Promise((r) => setTimeout(r, 20));
      throw new Error("roll back");
    });
    await insertDone; // the transaction holds the connection, its row written
    const read = dialect.rows<{ n: number }>("select count(*) as n from t where x >= ?", [0]);
    await assert.rejects(trx, /roll back/);
    assert.deepEqual((await read).map((r) => Number(r.n)), [0], "the read waited for the rollback");
    await assert.rejects(dialect.rows("select * from no_such_table", []), /no such table/);
    assert.equal(await count(db), 0, "a failed read hands the connection on");
  } finally {
    await db.destroy();
  }
});

Deno.test("SQLite dialect: durable acks run the connection at synchronous = FULL, else NORMAL", async () => {
  for (const [durable, level] of [[true, 2], [false, 1]] as const) {
    const db: AnyDb = new Kysely({ dialect: sqliteDialect(":memory:", { durable }) });
    try {
      const { rows } = await sql<{ synchronous: number }>`pragma synchronous`.execute(db);
      assert.deepEqual(rows.map((r) => r.synchronous), [level], `durable ${durable}`);
    } finally {
      await db.destroy();
    }
  }
});

Deno.test("SQLite dialect: a transaction SQLite rolled back itself (a full database) fails with that error", async () => {
  await withDb(async (db) => {
    await sql`insert into t (x) values (1)`.execute(db);
    const { rows } = await sql<{ page_count: number }>`pragma page_count`.execute(db);
    // No room for more pages: the next insert that needs one fails with SQLITE_FULL.
    await sql.raw(`pragma max_page_count = ${rows[0]!.page_count}`).execute(db);
    await assert.rejects(
      db.transaction().execute(async (tx) => {
        for (let i = 0; i < 10_000; i++) await sql`insert into t (x) values (${i})`.execute(tx);
      }),
      /database or disk is full/,
    );
    assert.equal(await count(db), 1, "nothing of the transaction was kept");
  });
});
