import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { GroupCommit } from "../lib/store_batch.ts";
import { openKyselyStore } from "../lib/store_kysely.ts";
import type { AppendOutcome, AppendRequest, StoredMessage } from "../lib/store.ts";
import { APPEND_WORKER, newMessage, newUser } from "./_store_samples.ts";
import { dropPgSchema } from "./_chat_helpers.ts";

const PG_URL = Deno.env.get("CHAT_TEST_PG_URL");

function stored(request: AppendRequest, seq: number): StoredMessage {
  return { ...request.message, id: seq, conv: "c", seq, ts: request.now };
}

/** A batch writer that records each batch and finishes it only when told to. */
function heldWriter() {
  const batches: string[][] = [];
  const release: (() => void)[] = [];
  let seq = 0;
  const write = async (batch: readonly AppendRequest[]): Promise<AppendOutcome[]> => {
    batches.push(batch.map((r) => r.message.cid));
    await new Promise<void>((resolve) => release.push(resolve));
    return batch.map((r) =>
      r.message.cid.startsWith("bad")
        ? { ok: false, error: new RangeError(`bad item ${r.message.cid}`) }
        : { ok: true, result: { message: stored(r, ++seq), duplicate: false } }
    );
  };
  return { batches, release, write };
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(check(), "condition not reached in 1 s");
}

Deno.test("GroupCommit batches the appends made while a write is in flight, in call order", async () => {
  const w = heldWriter();
  const commits = new GroupCommit(w.write, { maxBatch: 3 });
  const send = (cid: string) => commits.append(newMessage(1, { dstid: 2, cid }), 0);
  const first = [send("a"), send("b")];
  await until(() => w.batches.length === 1);
  const later = ["c", "d", "e", "f"].map(send);
  assert.equal(commits.waiting, 4);
  w.release.shift()?.();
  await until(() => w.batches.length === 2);
  w.release.shift()?.();
  await until(() => w.batches.length === 3);
  w.release.shift()?.();
  const results = await Promise.all([...first, ...later]);
  assert.deepStrictEqual(w.batches, [["a", "b"], ["c", "d", "e"], ["f"]]);
  assert.deepStrictEqual(results.map((r) => [r.message.cid, r.message.seq]), [
    ["a", 1],
    ["b", 2],
    ["c", 3],
    ["d", 4],
    ["e", 5],
    ["f", 6],
  ]);
  assert.equal(commits.waiting, 0);
});

Deno.test("GroupCommit with maxInFlight 2 hands the writer the next batch before the first ends", async () => {
  const w = heldWriter();
  const commits = new GroupCommit(w.write, { maxBatch: 2, maxInFlight: 2 });
  const send = (cid: string) => commits.append(newMessage(1, { dstid: 2, cid }), 0);
  const first = send("a");
  await until(() => w.batches.length === 1);
  const more = ["b", "c", "d", "e", "f"].map(send);
  // One more batch goes out at once; the rest wait for a slot.
  await until(() => w.batches.length === 2);
  assert.deepStrictEqual(w.batches, [["a"], ["b", "c"]]);
  assert.equal(commits.waiting, 3);
  w.release.shift()?.();
  await until(() => w.batches.length === 3);
  assert.deepStrictEqual(w.batches[2], ["d", "e"]);
  for (let i = 0; i < 3; i++) {
    await until(() => w.release.length > 0);
    w.release.shift()?.();
  }
  const results = await Promise.all([first, ...more]);
  assert.deepStrictEqual(w.batches, [["a"], ["b", "c"], ["d", "e"], ["f"]]);
  assert.deepStrictEqual(results.map((r) => r.message.seq), [1, 2, 3, 4, 5, 6]);
  assert.equal(commits.waiting, 0);
});

Deno.test("GroupCommit fails only the item that failed, and a failed write only its batch", async () => {
  const w = heldWriter();
  const commits = new GroupCommit(w.write);
  const send = (cid: string) => commits.append(newMessage(1, { dstid: 2, cid }), 0);
  const one = [send("ok1"), send("bad1"), send("ok2")];
  await until(() => w.batches.length === 1);
  w.release.shift()?.();
  const settled = await Promise.allSettled(one);
  assert.deepStrictEqual(settled.map((s) => s.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.ok(settled[1]?.status === "rejected" && settled[1].reason instanceof RangeError);

  let calls = 0;
  const flaky = new GroupCommit((batch) => {
    calls++;
    if (calls === 1) return Promise.reject(new Error("store down"));
    return Promise.resolve(batch.map((r, i) => ({
      ok: true as const,
      result: { message: stored(r, i + 1), duplicate: false },
    })));
  });
  const failed = [1, 2].map((i) => flaky.append(newMessage(1, { dstid: 2, cid: `x${i}` }), 0));
  const results = await Promise.allSettled(failed);
  assert.deepStrictEqual(results.map((r) => r.status), ["rejected", "rejected"]);
  const after = await flaky.append(newMessage(1, { dstid: 2, cid: "y" }), 0);
  assert.equal(after.message.cid, "y");
  assert.equal(calls, 2);
});

Deno.test("KyselyStore.appendMessages() on SQLite fails one rejected item alone, seqs gap-free", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_batch_" });
  const path = join(dir, "chat.db");
  const store = await openKyselyStore({ kind: "sqlite", path });
  try {
    const a = await store.createUser(newUser("13800000001"), 1);
    const b = await store.createUser(newUser("13800000002"), 1);
    const raw = new DatabaseSync(path);
    raw.exec(`CREATE TRIGGER reject_boom BEFORE INSERT ON messages WHEN NEW.content = 'boom'
      BEGIN SELECT RAISE(ABORT, 'boom rejected'); END`);
    raw.close();
    const batch = ["m1", "m2", "boom", "m3"].map((cid, i) => ({
      message: newMessage(a.id, { dstid: b.id, cid, content: cid === "boom" ? "boom" : cid }),
      now: i,
    }));
    const outcomes = await store.appendMessages(batch);
    assert.deepStrictEqual(outcomes.map((o) => o.ok ? o.result.message.seq : "failed"), [
      1,
      2,
      "failed",
      3,
    ]);
    const failure = outcomes[2];
    assert.ok(failure !== undefined && !failure.ok);
    assert.match(String(failure.error), /boom rejected/);
    // The same through appendMessage, where concurrent calls share a batch.
    const settled = await Promise.allSettled(
      ["n1", "boom2", "n2"].map((cid) =>
        store.appendMessage(
          newMessage(a.id, { dstid: b.id, cid, content: cid.startsWith("boom") ? "boom" : cid }),
          9,
        )
      ),
    );
    assert.deepStrictEqual(
      settled.map((s) => s.status === "fulfilled" ? s.value.message.seq : s.status),
      [4, "rejected", 5],
    );
    const conv = `u:${Math.min(a.id, b.id)}:${Math.max(a.id, b.id)}`;
    const rows = await store.listMessages(conv, { limit: 10 });
    assert.deepStrictEqual(rows.map((m) => [m.cid, m.seq]), [
      ["m1", 1],
      ["m2", 2],
      ["m3", 3],
      ["n1", 4],
      ["n2", 5],
    ]);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

for (const where of ["main thread", "append worker", "append worker only"] as const) {
  Deno.test(`a batch insert failing halfway on SQLite (${where}) leaves no rows behind`, async () => {
    // The batch's insert is `insert or fail`: SQLite keeps the rows before the
    // failing one, so only the rollback of the whole transaction removes them.
    const dir = await Deno.makeTempDir({ prefix: "lanchat_batch_" });
    const path = join(dir, "chat.db");
    const store = await openKyselyStore(
      { kind: "sqlite", path },
      where === "main thread"
        ? {}
        : { appendWorker: APPEND_WORKER, appendInline: where === "append worker" },
    );
    try {
      const [a, b, c] = await Promise.all(
        ["13800000001", "13800000002", "13800000003"].map((p, i) =>
          store.createUser(newUser(p), i)
        ),
      );
      assert.ok(a !== undefined && b !== undefined && c !== undefined);
      // A row in a:c's conversation that its seq counter does not know: the
      // batch's a:c message collides with it on (conv, seq), a plain unique index.
      const clashConv = `u:${Math.min(a.id, c.id)}:${Math.max(a.id, c.id)}`;
      const raw = new DatabaseSync(path);
      raw.prepare(
        `INSERT INTO messages (conv, seq, userid, cmd, dstid, media, content, pic, url, memo,
          amount, cid, ts) VALUES (?, 1, ?, 10, ?, 1, 'planted', '', '', '', 0, 'planted', 0)`,
      ).run(clashConv, a.id, c.id);
      raw.close();
      const batch = [["m1", b], ["m2", b], ["clash", c], ["m3", b]] as const;
      const outcomes = await store.appendMessages(batch.map(([cid, to], i) => ({
        message: newMessage(a.id, { dstid: to.id, cid }),
        now: i,
      })));
      assert.deepStrictEqual(
        outcomes.map((o) => o.ok ? [o.result.message.seq, o.result.duplicate] : "failed"),
        [[1, false], [2, false], "failed", [3, false]],
      );
      const conv = `u:${Math.min(a.id, b.id)}:${Math.max(a.id, b.id)}`;
      const rows = await store.listMessages(conv, { limit: 10 });
      assert.deepStrictEqual(rows.map((m) => [m.cid, m.seq]), [["m1", 1], ["m2", 2], ["m3", 3]]);
      const clash = await store.listMessages(clashConv, { limit: 10 });
      assert.deepStrictEqual(clash.map((m) => m.cid), ["planted"]);
    } finally {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test({
  name: "KyselyStore on Postgres: two nodes racing one cid in batches store it once",
  ignore: PG_URL === undefined,
  async fn() {
    const url = PG_URL ?? "";
    const schema = `t_${crypto.randomUUID().replaceAll("-", "")}`;
    const setting = { kind: "postgres", url } as const;
    const one = await openKyselyStore(setting, { schema, poolSize: 2 });
    const two = await openKyselyStore(setting, { schema, poolSize: 2 });
    try {
      const a = await one.createUser(newUser("13800000001"), 1);
      const b = await one.createUser(newUser("13800000002"), 1);
      const batchOf = (tag: string) =>
        Array.from({ length: 20 }, (_, i) => ({
          // Every fourth cid is shared by both nodes' batches.
          message: newMessage(a.id, { dstid: b.id, cid: i % 4 === 0 ? `same${i}` : `${tag}${i}` }),
          now: i,
        }));
      const rounds = await Promise.all(
        Array.from({ length: 5 }, (_, r) =>
          Promise.all([
            one.appendMessages(batchOf(`one${r}-`)),
            two.appendMessages(batchOf(`two${r}-`)),
          ])),
      );
      const all = rounds.flat(2);
      assert.equal(all.length, 200);
      assert.ok(all.every((o) => o.ok), "an item failed");
      const results = all.flatMap((o) => o.ok ? [o.result] : []);
      const fresh = results.filter((r) => !r.duplicate);
      // 5 shared cids + 15 own per batch × 10 batches.
      assert.equal(fresh.length, 5 + 150);
      const conv = `u:${Math.min(a.id, b.id)}:${Math.max(a.id, b.id)}`;
      const rows = await one.listMessages(conv, { limit: 500 });
      assert.deepStrictEqual(rows.map((m) => m.seq), Array.from({ length: 155 }, (_, i) => i + 1));
      for (const r of results) {
        assert.deepStrictEqual(r.message, rows[r.message.seq - 1]);
      }
      // A value Postgres refuses (NUL in text) fails that item alone.
      const mixed = await one.appendMessages([
        { message: newMessage(a.id, { dstid: b.id, cid: "nul", content: "a\u0000b" }), now: 1 },
        { message: newMessage(a.id, { dstid: b.id, cid: "fine" }), now: 1 },
      ]);
      assert.deepStrictEqual(mixed.map((o) => o.ok ? o.result.message.seq : "failed"), [
        "failed",
        156,
      ]);
    } finally {
      await one.close();
      await two.close();
      await dropPgSchema(url, schema);
    }
  },
});
