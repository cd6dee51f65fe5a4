/**
 * The SQLite append worker (lib/store_append_worker.ts): batches written on
 * another thread come back as the same results and errors the main thread
 * would give, and every way the worker can fail leaves appends working on
 * the main thread, with nothing lost.
 */

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openKyselyStore } from "../lib/store_kysely.ts";
import { AppendWorker } from "../lib/store_append_worker.ts";
import {
  decodeBatch,
  decodeOutcomes,
  encodeBatch,
  encodeOutcomes,
  fromWire,
  toWire,
} from "../lib/_append_wire.ts";
import { isUniqueViolation } from "../lib/_store_kysely_rows.ts";
import { APPEND_WORKER, newMessage, newUser } from "./_store_samples.ts";
import { delay } from "./_chat_helpers.ts";

const CRASHING_WORKER = new URL("./_crashing_append_worker.ts", import.meta.url);
const WARNING_WORKER = new URL("./_warning_append_worker.ts", import.meta.url);

async function tempDb(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_append_worker_" });
  return {
    path: join(dir, "chat.db"),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

Deno.test("an SQLite error keeps its message and codes across the thread boundary", () => {
  const db = new DatabaseSync(":memory:");
  db.exec("create table t (x integer primary key)");
  db.exec("insert into t values (1)");
  let thrown: unknown;
  try {
    db.exec("insert into t values (1)");
  } catch (error) {
    thrown = error;
  } finally {
    db.close();
  }
  ok(isUniqueViolation(thrown));
  const back = fromWire(structuredClone(toWire(thrown)));
  ok(isUniqueViolation(back), back.message);
  strictEqual(back.message, (thrown as Error).message);
  strictEqual(
    (back as { errcode?: number }).errcode,
    (thrown as { errcode?: number }).errcode,
  );
  deepStrictEqual(fromWire(toWire("plain")).message, "plain");
});

Deno.test("a batch and its outcomes survive the flat wire format", () => {
  const batch = [
    { message: newMessage(7, { dstid: 8, cid: "a", content: "héllo \u0000 ✓" }), now: 11 },
    {
      message: { ...newMessage(7, { cmd: 11, dstid: 3, cid: "b" }), amount: 250, memo: "m" },
      now: 12,
    },
    { message: newMessage(8, { dstid: 7, cid: "c" }), now: 13 },
  ];
  const wire = structuredClone(encodeBatch(batch));
  deepStrictEqual(decodeBatch(wire), batch);
  throws(() => decodeBatch(wire.slice(1)), /not a multiple/);
  throws(() => decodeBatch([...wire.slice(0, -1), "13"]), /not a number/);

  const first = { ...batch[2]!.message, id: 1, conv: "u:7:8", seq: 1, ts: 5 };
  const outcomes = [
    {
      ok: true as const,
      result: {
        message: { ...batch[0]!.message, id: 9, conv: "u:7:8", seq: 2, ts: 11 },
        duplicate: false,
      },
    },
    { ok: false as const, error: Object.assign(new Error("boom"), { errcode: 19 }) },
    { ok: true as const, result: { message: first, duplicate: true } },
  ];
  const back = decodeOutcomes(structuredClone(encodeOutcomes(outcomes)), batch);
  deepStrictEqual(back[0], outcomes[0]);
  deepStrictEqual(back[2], outcomes[2]);
  ok(!back[1]!.ok && back[1]!.error instanceof Error);
  strictEqual((back[1] as { error: { errcode?: number } }).error.errcode, 19);
  // An item the worker left out fails on its own instead of answering a made-up row.
  const missing = encodeOutcomes(outcomes);
  missing.fresh.fill(NaN);
  ok(!decodeOutcomes(missing, batch)[0]!.ok);
});

Deno.test("appends in the worker get gap-free seqs while the main thread writes the same file", async () => {
  await using db = await tempDb();
  const store = await openKyselyStore({ kind: "sqlite", path: db.path }, {
    appendWorker: APPEND_WORKER,
  });
  try {
    const ann = await store.createUser(newUser("13800000001"), 1);
    const bob = await store.createUser(newUser("13800000002"), 1);
    // Main-thread writes (new users) race 400 appends the worker writes.
    const users = Array.from(
      { length: 40 },
      (_, i) => store.createUser(newUser(`1390000${1000 + i}`), 2),
    );
    const appends = Array.from(
      { length: 400 },
      (_, i) =>
        store.appendMessage(
          newMessage(i % 2 ? ann.id : bob.id, {
            dstid: i % 2 ? bob.id : ann.id,
            cid: `c${i}`,
          }),
          3,
        ),
    );
    strictEqual((await Promise.all(users)).length, 40);
    const results = await Promise.all(appends);
    deepStrictEqual(
      results.map((r) => r.message.seq).sort((a, b) => a - b),
      Array.from({ length: 400 }, (_, i) => i + 1),
    );
    ok(results.every((r) => !r.duplicate));
    // A resend is a duplicate with the first copy's seq, as on the main thread.
    const again = await store.appendMessage(newMessage(bob.id, { dstid: ann.id, cid: "c0" }), 4);
    strictEqual(again.duplicate, true);
    strictEqual(again.message.seq, results[0]!.message.seq);
    const page = await store.listMessages(results[0]!.message.conv, { afterSeq: 0, limit: 1000 });
    strictEqual(page.length, 400);
  } finally {
    await store.close();
  }
});

Deno.test("the worker refuses to start on a file it cannot open, and leaves nothing running", async () => {
  await using db = await tempDb();
  await Deno.mkdir(db.path);
  // A folder where the database file should be: SQLite cannot open it.
  await rejects(AppendWorker.start(APPEND_WORKER, db.path), /unable to open/i);
  // Outside the granted folders the worker meets the process's permissions.
  await rejects(
    AppendWorker.start(APPEND_WORKER, "/nonexistent-lanchat/chat.db"),
    /NotCapable|read access/,
  );
});

Deno.test("a worker module that does not load leaves appends on the main thread", async () => {
  await using db = await tempDb();
  const store = await openKyselyStore({ kind: "sqlite", path: db.path }, {
    appendWorker: new URL("./_no_such_worker.ts", import.meta.url),
  });
  try {
    const ann = await store.createUser(newUser("13800000001"), 1);
    const bob = await store.createUser(newUser("13800000002"), 1);
    const r = await store.appendMessage(newMessage(ann.id, { dstid: bob.id, cid: "x" }), 2);
    strictEqual(r.message.seq, 1);
  } finally {
    await store.close();
  }
});

Deno.test("a worker that crashes mid-batch: the batch is written on the main thread, once", async () => {
  await using db = await tempDb();
  const store = await openKyselyStore({ kind: "sqlite", path: db.path }, {
    appendWorker: CRASHING_WORKER,
  });
  try {
    const ann = await store.createUser(newUser("13800000001"), 1);
    const bob = await store.createUser(newUser("13800000002"), 1);
    const first = await Promise.all(
      [0, 1, 2].map((i) =>
        store.appendMessage(newMessage(ann.id, { dstid: bob.id, cid: `k${i}` }), 2)
      ),
    );
    deepStrictEqual(first.map((r) => [r.message.seq, r.duplicate]), [[1, false], [2, false], [
      3,
      false,
    ]]);
    const later = await store.appendMessage(newMessage(bob.id, { dstid: ann.id, cid: "k3" }), 3);
    strictEqual(later.message.seq, 4);
  } finally {
    await store.close();
  }
});

Deno.test("the worker's warnings reach onWarning, and the WAL sync interval reaches the worker", async () => {
  await using db = await tempDb();
  for (
    const [options, expected] of [[{}, "walSyncMs=100"], [{ walSyncMs: 0 }, "walSyncMs=0"]] as const
  ) {
    const warnings: string[] = [];
    const worker = await AppendWorker.start(WARNING_WORKER, db.path, {
      ...options,
      onWarning: (message) => warnings.push(message),
    });
    for (let i = 0; i < 100 && warnings.length === 0; i++) {
      await delay(10);
    }
    await worker.close();
    deepStrictEqual(warnings, [expected]);
  }
});

Deno.test("with background WAL syncs on, appends and close work as before", async () => {
  await using db = await tempDb();
  const setup = await openKyselyStore({ kind: "sqlite", path: db.path });
  const ann = await setup.createUser(newUser("13800000001"), 1);
  const bob = await setup.createUser(newUser("13800000002"), 1);
  await setup.close();
  const worker = await AppendWorker.start(APPEND_WORKER, db.path, { walSyncMs: 5 });
  let seq = 0;
  for (let round = 0; round < 5; round++) {
    const outcomes = await worker.write(
      [0, 1, 2].map((i) => ({
        message: newMessage(ann.id, { dstid: bob.id, cid: `w${round}-${i}` }),
        now: 2,
      })),
    );
    for (const outcome of outcomes) {
      ok(outcome.ok);
      strictEqual(outcome.result.message.seq, ++seq);
    }
    // Let a background sync run between batches (and sometimes during one).
    await delay(round * 3);
  }
  await worker.close();
  strictEqual(worker.running, false);
  const reader = new DatabaseSync(db.path);
  try {
    const row = reader.prepare("select count(*) as n from messages").get() as { n: number };
    strictEqual(row.n, 15);
  } finally {
    reader.close();
  }
});
