import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import pg from "pg";
import { Kysely, sql } from "kysely";
import { openKyselyStore } from "../lib/store_kysely.ts";
import { ReusedQueries } from "../lib/_reused_query.ts";
import { sqliteDialect } from "../lib/_sqlite_dialect.ts";
import type { Database } from "../lib/migrations.ts";
import { pgConnectionConfig } from "../lib/_pg_dialect.ts";
import { storeContract } from "./store_contract.ts";
import { APPEND_WORKER, newMessage, newUser } from "./_store_samples.ts";
import { dropPgSchema } from "./_chat_helpers.ts";
import { TcpProxy } from "./_tcp_proxy.ts";
import { BusyError } from "../lib/errors.ts";

const PG_URL = Deno.env.get("CHAT_TEST_PG_URL");

/** A Postgres schema name no other test uses. */
function freshSchema(): string {
  return `t_${crypto.randomUUID().replaceAll("-", "")}`;
}

async function pgQuery(url: string, text: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client(pgConnectionConfig(url));
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

storeContract("KyselyStore on SQLite :memory:", async () => {
  const store = await openKyselyStore({ kind: "sqlite", path: ":memory:" });
  return { store, [Symbol.asyncDispose]: () => store.close() };
});

storeContract("KyselyStore on a SQLite file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_store_" });
  const store = await openKyselyStore({ kind: "sqlite", path: join(dir, "chat.db") });
  return {
    store,
    async [Symbol.asyncDispose]() {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});

// By default an idle worker's small batches are written on the main thread:
// the contract runs on that mix, and on the worker alone.
for (const appendInline of [true, false]) {
  storeContract(
    `KyselyStore on a SQLite file, appends in the worker${appendInline ? "" : " only"}`,
    async () => {
      const dir = await Deno.makeTempDir({ prefix: "lanchat_store_" });
      const store = await openKyselyStore({ kind: "sqlite", path: join(dir, "chat.db") }, {
        appendWorker: APPEND_WORKER,
        appendInline,
      });
      return {
        store,
        async [Symbol.asyncDispose]() {
          await store.close();
          await Deno.remove(dir, { recursive: true });
        },
      };
    },
  );
}

storeContract(
  "KyselyStore on Postgres",
  async () => {
    const url = PG_URL ?? "";
    const schema = freshSchema();
    const store = await openKyselyStore({ kind: "postgres", url }, { schema, poolSize: 5 });
    return {
      store,
      async [Symbol.asyncDispose]() {
        await store.close();
        await dropPgSchema(url, schema);
      },
    };
  },
  { ignore: PG_URL === undefined },
);

Deno.test("openKyselyStore() lets two stores open one new SQLite file at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_store_" });
  try {
    // A nested path also proves the parent folder is created.
    const setting = { kind: "sqlite", path: join(dir, "nested", "chat.db") } as const;
    const [one, two] = await Promise.all([openKyselyStore(setting), openKyselyStore(setting)]);
    try {
      const ann = await one.createUser(newUser("13800000001"), 1);
      const bob = await two.createUser(newUser("13800000002"), 2);
      assert.deepStrictEqual(await two.findUser(ann.id), ann);
      assert.deepStrictEqual(await one.findUser(bob.id), bob);
      // Both connections append to one conversation at once: BEGIN IMMEDIATE
      // and the busy retry keep the seq gap-free across connections.
      const results = await Promise.all(
        Array.from(
          { length: 60 },
          (_, i) =>
            (i % 2 ? one : two).appendMessage(
              newMessage(i % 3 ? ann.id : bob.id, { dstid: i % 3 ? bob.id : ann.id, cid: `c${i}` }),
              i,
            ),
        ),
      );
      const seqs = results.map((r) => r.message.seq).sort((a, b) => a - b);
      assert.deepStrictEqual(seqs, Array.from({ length: 60 }, (_, i) => i + 1));
      await assert.rejects(two.createUser(newUser("13800000001"), 3), { name: "ConflictError" });
    } finally {
      await one.close();
      await two.close();
    }
    const raw = new DatabaseSync(setting.path);
    try {
      const rows = raw.prepare("SELECT name FROM kysely_migration").all();
      assert.deepStrictEqual(rows.map((r) => (r as { name: string }).name), ["0001_initial"]);
      const mode = raw.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
      assert.equal(mode.journal_mode, "wal");
    } finally {
      raw.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Child-process side of the two-process test: open, register, append 100. */
async function childAppends(path: string, tag: string): Promise<void> {
  const store = await openKyselyStore({ kind: "sqlite", path });
  try {
    const me = await store.createUser(newUser(`1390000000${tag}`), 1);
    await Promise.all(
      Array.from(
        { length: 100 },
        (_, i) => store.appendMessage(newMessage(me.id, { cmd: 11, dstid: 1, cid: `c${i}` }), i),
      ),
    );
  } finally {
    await store.close();
  }
}

if (import.meta.main) {
  const [path, tag] = Deno.args;
  if (path === undefined || tag === undefined) throw new TypeError("Usage: <db path> <tag>");
  await childAppends(path, tag);
}

Deno.test("openKyselyStore() lets two processes migrate and write one new SQLite file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_store_" });
  try {
    const path = join(dir, "chat.db");
    const config = new URL("../deno.json", import.meta.url).pathname;
    const self = new URL(import.meta.url).pathname;
    const children = ["1", "2", "3"].map((tag) =>
      new Deno.Command("deno", {
        args: [
          "run",
          `--config=${config}`,
          `--allow-read=${dir}`,
          `--allow-write=${dir}`,
          "--allow-env=CHAT_TEST_PG_URL",
          self,
          path,
          tag,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output()
    );
    for (const out of await Promise.all(children)) {
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    }
    const raw = new DatabaseSync(path);
    try {
      const seqs = raw.prepare("SELECT seq FROM messages ORDER BY seq").all()
        .map((r) => (r as { seq: number }).seq);
      assert.deepStrictEqual(seqs, Array.from({ length: 300 }, (_, i) => i + 1));
      assert.equal(raw.prepare("SELECT name FROM kysely_migration").all().length, 1);
    } finally {
      raw.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openKyselyStore() reopens an existing SQLite file without migrating twice", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_store_" });
  try {
    const setting = { kind: "sqlite", path: join(dir, "chat.db") } as const;
    const first = await openKyselyStore(setting);
    const ann = await first.createUser(newUser("13800000001"), 1);
    await first.close();
    const raw = new DatabaseSync(setting.path);
    const before = raw.prepare("SELECT name, timestamp FROM kysely_migration").all();
    raw.close();
    const again = await openKyselyStore(setting);
    try {
      assert.deepStrictEqual(await again.findUser(ann.id), ann);
    } finally {
      await again.close();
    }
    const raw2 = new DatabaseSync(setting.path);
    const after = raw2.prepare("SELECT name, timestamp FROM kysely_migration").all();
    raw2.close();
    assert.equal(before.length, 1);
    assert.deepStrictEqual(after, before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "openKyselyStore() lets two nodes migrate one fresh Postgres schema at once",
  ignore: PG_URL === undefined,
  async fn() {
    const url = PG_URL ?? "";
    const schema = freshSchema();
    try {
      const setting = { kind: "postgres", url } as const;
      const opened = await Promise.all(
        Array.from({ length: 3 }, () => openKyselyStore(setting, { schema, poolSize: 3 })),
      );
      const [one, two] = opened;
      assert.ok(one && two);
      try {
        const ann = await one.createUser(newUser("13800000001"), 1);
        assert.deepStrictEqual(await two.findUser(ann.id), ann);
      } finally {
        await Promise.all(opened.map((s) => s.close()));
      }
      const rows = await pgQuery(url, `SELECT name FROM ${schema}.kysely_migration`);
      assert.deepStrictEqual(rows.map((r) => r.name), ["0001_initial"]);
      // Reopening finds everything applied and changes nothing.
      const again = await openKyselyStore(setting, { schema, poolSize: 1 });
      await again.ping();
      await again.close();
      const after = await pgQuery(url, `SELECT name FROM ${schema}.kysely_migration`);
      assert.equal(after.length, 1);
      const tables = await pgQuery(
        url,
        `SELECT table_name FROM information_schema.tables WHERE table_schema = '${schema}'
         ORDER BY table_name`,
      );
      assert.ok(tables.some((t) => t.table_name === "messages"));
    } finally {
      await dropPgSchema(url, schema);
    }
  },
});

Deno.test({
  name: "openKyselyStore() returns Postgres ids and times as numbers",
  ignore: PG_URL === undefined,
  async fn() {
    const url = PG_URL ?? "";
    const schema = freshSchema();
    const store = await openKyselyStore({ kind: "postgres", url }, { schema, poolSize: 1 });
    try {
      const user = await store.createUser(newUser("13800000001"), 1_700_000_000_123);
      assert.equal(typeof user.id, "number");
      assert.equal(user.createdAt, 1_700_000_000_123);
      await store.recordAttachment({
        name: "a.png",
        ownerId: user.id,
        mime: "image/png",
        size: 5_000_000_000,
        createdAt: 1,
      });
      assert.equal(await store.attachmentBytes(user.id), 5_000_000_000);
    } finally {
      await store.close();
      await dropPgSchema(url, schema);
    }
  },
});

Deno.test({
  name: "Postgres: a group create whose COMMIT landed but whose answer was lost (503) is not " +
    "made twice by its retry: the retry answers the group the first call made",
  ignore: PG_URL === undefined,
  async fn() {
    const url = new URL(PG_URL ?? "");
    await using proxy = TcpProxy.start({ hostname: url.hostname, port: Number(url.port || 5432) });
    const via = new URL(url);
    via.hostname = "127.0.0.1";
    via.port = String(proxy.port);
    const schema = freshSchema();
    const store = await openKyselyStore({ kind: "postgres", url: via.href }, {
      schema,
      poolSize: 2,
      queryDeadlineMs: 1000,
    });
    try {
      const owner = await store.createUser(newUser("13800000001"), 1);
      const spec = { name: "Chess club", ownerId: owner.id, icon: "", cate: 0, memo: "" };
      // The database commits; its answer never comes back (a host gone, a cut link).
      proxy.freezeAfterSending("commit");
      await assert.rejects(
        store.createGroup(spec, { now: Date.now(), maxPerOwner: 5 }),
        (e) => e instanceof BusyError && e.retryable,
      );
      proxy.thaw();
      const stored = await pgQuery(
        PG_URL ?? "",
        `select id from ${schema}.chat_groups where owner_id = ${owner.id}`,
      );
      assert.equal(stored.length, 1, "the first create did commit");
      // The client's retry, as the bundled web client or a user would make it.
      const retried = await store.createGroup(spec, { now: Date.now(), maxPerOwner: 5 });
      assert.equal(retried.id, Number(stored[0]!["id"]));
      assert.deepStrictEqual((await store.listGroups(owner.id)).map((g) => g.id), [retried.id]);
      assert.deepStrictEqual(await store.listMembers(retried.id), [owner.id]);
    } finally {
      await store.close();
      await dropPgSchema(PG_URL ?? "", schema);
    }
  },
});

Deno.test("openKyselyStore() rejects a schema name that is not a plain identifier", async () => {
  await assert.rejects(
    openKyselyStore({ kind: "postgres", url: "postgres://127.0.0.1:1/x" }, {
      schema: "x; drop table users",
    }),
    RangeError,
  );
});

for (const direct of [false, true]) {
  Deno.test(`ReusedQueries ${direct ? "on direct SQLite reads " : ""}compiles once, reruns with new values, and refuses a wrong value count`, async () => {
    const dialect = sqliteDialect(":memory:");
    const db = new Kysely<Database>({ dialect });
    try {
      await db.schema.createTable("t").addColumn("x", "integer").execute();
      await sql`insert into t (x) values (1), (2), (3)`.execute(db);
      const queries = direct ? new ReusedQueries(dialect) : new ReusedQueries();
      let builds = 0;
      // deno-lint-ignore no-explicit-any
      const typed = db as unknown as Kysely<any>;
      const build = (min: number) => () => {
        builds++;
        return typed.selectFrom("t").select("x").where("x", ">=", min).orderBy("x");
      };
      const first = await queries.rows(db, "atLeast", build(2), [2]);
      const second = await queries.rows(db, "atLeast", build(3), [3]);
      assert.deepStrictEqual(first.map((r) => Number((r as { x: number }).x)), [2, 3]);
      assert.deepStrictEqual(second.map((r) => Number((r as { x: number }).x)), [3]);
      assert.equal(builds, 1);
      await assert.rejects(queries.rows(db, "other", build(1), [1, 2]), /binds 1 values, not 2/);
    } finally {
      await db.destroy();
    }
  });
}
