/**
 * The message half of the {@linkcode Store} contract (`store_contract.ts`
 * registers it): seqs per conversation, cid dedup, batches, pages, heads.
 *
 * @module
 */

import assert from "node:assert/strict";
import { newMessage, plainGroup, type StoreCase, users } from "./_store_samples.ts";

/** The contract's message cases, by title. */
export const MESSAGE_CASES: Record<string, StoreCase> = {
  async "appendMessage() numbers each conversation 1, 2, 3 and dedups by cid"(
    store,
  ) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    const m1 = await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "x1" }), 100);
    const m2 = await store.appendMessage(newMessage(b.id, { dstid: a.id, cid: "x1" }), 101);
    const m3 = await store.appendMessage(newMessage(a.id, { dstid: c.id, cid: "x2" }), 102);
    const lo = Math.min(a.id, b.id);
    const hi = Math.max(a.id, b.id);
    assert.deepStrictEqual(
      [m1.message.seq, m2.message.seq, m3.message.seq],
      [1, 2, 1],
    );
    assert.equal(m1.message.conv, `u:${lo}:${hi}`);
    assert.equal(m2.message.conv, m1.message.conv);
    assert.equal(m1.duplicate, false);
    assert.deepStrictEqual(m1.message, {
      ...newMessage(a.id, { dstid: b.id, cid: "x1" }),
      id: m1.message.id,
      conv: `u:${lo}:${hi}`,
      seq: 1,
      ts: 100,
    });
    const again = await store.appendMessage(
      newMessage(a.id, { dstid: b.id, cid: "x1", content: "changed" }),
      200,
    );
    assert.deepStrictEqual(again, { message: m1.message, duplicate: true });
    const next = await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "x3" }), 103);
    assert.equal(next.message.seq, 3);
    assert.ok(next.message.id > m1.message.id);
  },

  async "appendMessage() racing one cid stores it once"(store) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    const results = await Promise.all(
      Array.from(
        { length: 20 },
        () => store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "same" }), 1),
      ),
    );
    assert.equal(results.filter((r) => !r.duplicate).length, 1);
    for (const r of results) assert.deepStrictEqual(r.message, results[0]?.message);
    const after = await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "other" }), 2);
    assert.equal(after.message.seq, 2);
  },

  async "appendMessage() keeps seq gap-free under 200 concurrent appends"(
    store,
  ) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    const g = await plainGroup(store, a.id);
    await store.joinGroup(b.id, g.id, 1);
    const results = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) =>
          store.appendMessage(
            newMessage(i % 2 ? a.id : b.id, { cmd: 11, dstid: g.id, cid: `c${i}` }),
            i,
          ),
      ),
    );
    const seqs = results.map((r) => r.message.seq).sort((x, y) => x - y);
    assert.deepStrictEqual(seqs, Array.from({ length: 200 }, (_, i) => i + 1));
    const stored = await store.listMessages(`g:${g.id}`, { limit: 500 });
    assert.deepStrictEqual(stored.map((m) => m.seq), seqs);
  },

  async "appendMessages() dedups a cid repeated inside a batch and across batches"(store) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    const req = (cid: string, now: number, content?: string) => ({
      message: newMessage(a.id, { dstid: b.id, cid, ...(content ? { content } : {}) }),
      now,
    });
    const first = await store.appendMessages([req("d1", 1), req("d2", 2), req("d1", 3, "again")]);
    const ok = first.map((o) => {
      assert.ok(o.ok, `item failed: ${o.ok ? "" : String(o.error)}`);
      return o.result;
    });
    assert.deepStrictEqual(ok.map((r) => [r.message.cid, r.message.seq, r.duplicate]), [
      ["d1", 1, false],
      ["d2", 2, false],
      ["d1", 1, true],
    ]);
    assert.deepStrictEqual(ok[2]?.message, ok[0]?.message);
    assert.equal(ok[0]?.message.ts, 1);
    const second = await store.appendMessages([req("d2", 4), req("d3", 5), req("d3", 6)]);
    assert.deepStrictEqual(
      second.map((o) => o.ok && [o.result.message.cid, o.result.message.seq, o.result.duplicate]),
      [["d2", 2, true], ["d3", 3, false], ["d3", 3, true]],
    );
    assert.deepStrictEqual(second[0]?.ok && second[0].result.message, ok[1]?.message);
    assert.deepStrictEqual(await store.appendMessages([]), []);
    const conv = ok[0]?.message.conv ?? "";
    const stored = await store.listMessages(conv, { limit: 10 });
    assert.deepStrictEqual(stored.map((m) => [m.cid, m.seq]), [["d1", 1], ["d2", 2], ["d3", 3]]);
  },

  async "appendMessages() numbers mixed conversations in call order"(store) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    const g = await plainGroup(store, a.id);
    await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "pre" }), 1);
    const plan: [number, { cmd?: number; dstid: number }][] = [
      [a.id, { dstid: b.id }],
      [a.id, { cmd: 11, dstid: g.id }],
      [b.id, { dstid: a.id }],
      [c.id, { dstid: a.id }],
      [a.id, { cmd: 11, dstid: g.id }],
      [a.id, { dstid: c.id }],
      [b.id, { dstid: a.id }],
    ];
    const outcomes = await store.appendMessages(
      plan.map(([from, to], i) => ({ message: newMessage(from, { ...to, cid: `m${i}` }), now: i })),
    );
    const key = (x: number, y: number) => `u:${Math.min(x, y)}:${Math.max(x, y)}`;
    assert.deepStrictEqual(
      outcomes.map((o) => o.ok && [o.result.message.conv, o.result.message.seq]),
      [
        [key(a.id, b.id), 2],
        [`g:${g.id}`, 1],
        [key(a.id, b.id), 3],
        [key(a.id, c.id), 1],
        [`g:${g.id}`, 2],
        [key(a.id, c.id), 2],
        [key(a.id, b.id), 4],
      ],
    );
    const ids = outcomes.map((o) => o.ok ? o.result.message.id : 0);
    assert.equal(new Set(ids).size, 7);
    assert.deepStrictEqual(
      (await store.listMessages(key(a.id, b.id), { limit: 10 })).map((m) => m.cid),
      ["pre", "m0", "m2", "m6"],
    );
    assert.deepStrictEqual(
      await store.lastSeqs(a.id),
      new Map([[key(a.id, b.id), 4], [key(a.id, c.id), 2], [`g:${g.id}`, 2]]),
    );
  },

  async "appendMessage() concurrent calls get seqs in call order, repeats deduped"(store) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    const results = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) => store.appendMessage(newMessage(a.id, { dstid: b.id, cid: `c${i % 150}` }), i),
      ),
    );
    assert.deepStrictEqual(
      results.map((r) => r.message.seq),
      Array.from({ length: 200 }, (_, i) => (i % 150) + 1),
    );
    assert.deepStrictEqual(
      results.map((r) => r.duplicate),
      Array.from({ length: 200 }, (_, i) => i >= 150),
    );
    for (let i = 150; i < 200; i++) {
      assert.deepStrictEqual(results[i]?.message, results[i - 150]?.message);
    }
  },

  async "listMessages() pages after and before a seq in ascending order"(store) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    for (let i = 1; i <= 10; i++) {
      await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: `m${i}` }), i);
    }
    const conv = `u:${Math.min(a.id, b.id)}:${Math.max(a.id, b.id)}`;
    const seqs = async (o: { afterSeq?: number; beforeSeq?: number; limit: number }) =>
      (await store.listMessages(conv, o)).map((m) => m.seq);
    assert.deepStrictEqual(await seqs({ limit: 3 }), [1, 2, 3]);
    assert.deepStrictEqual(await seqs({ afterSeq: 3, limit: 3 }), [4, 5, 6]);
    assert.deepStrictEqual(await seqs({ afterSeq: 8, limit: 5 }), [9, 10]);
    assert.deepStrictEqual(await seqs({ afterSeq: 10, limit: 5 }), []);
    assert.deepStrictEqual(await seqs({ beforeSeq: 11, limit: 3 }), [8, 9, 10]);
    assert.deepStrictEqual(await seqs({ beforeSeq: 3, limit: 5 }), [1, 2]);
    assert.deepStrictEqual(
      await seqs({ afterSeq: 2, beforeSeq: 9, limit: 3 }),
      [6, 7, 8],
    );
    assert.deepStrictEqual(await seqs({ limit: 0 }), []);
    assert.deepStrictEqual(await store.listMessages("u:998:999", { limit: 5 }), []);
  },

  async "lastSeqs() covers the user's 1:1 conversations and groups only"(store) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    const g = await plainGroup(store, b.id);
    const h = await plainGroup(store, c.id, "h");
    await store.joinGroup(a.id, g.id, 1);
    const send = (from: number, to: { cmd?: number; dstid: number }, cid: string) =>
      store.appendMessage(newMessage(from, { ...to, cid }), 1);
    await send(a.id, { dstid: b.id }, "1");
    await send(b.id, { dstid: a.id }, "2");
    await send(c.id, { dstid: a.id }, "3");
    await send(b.id, { dstid: c.id }, "4");
    await send(b.id, { cmd: 11, dstid: g.id }, "5");
    await send(c.id, { cmd: 11, dstid: h.id }, "6");
    const key = (x: number, y: number) => `u:${Math.min(x, y)}:${Math.max(x, y)}`;
    assert.deepStrictEqual(
      await store.lastSeqs(a.id),
      new Map([[key(a.id, b.id), 2], [key(a.id, c.id), 1], [`g:${g.id}`, 1]]),
    );
    assert.deepStrictEqual(
      await store.lastSeqs(c.id),
      new Map([[key(a.id, c.id), 1], [key(b.id, c.id), 1], [`g:${h.id}`, 1]]),
    );
    assert.deepStrictEqual(await store.lastSeqs(9999), new Map());
  },

  async "recentHeads() gives each conversation's newest seq among the last messages since a time"(
    store,
  ) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    const send = (from: number, to: number, cid: string, ts: number) =>
      store.appendMessage(newMessage(from, { dstid: to, cid }), ts);
    await send(a.id, b.id, "1", 100); // a-b seq 1, too old below
    await send(a.id, c.id, "2", 100); // a-c seq 1, too old
    await send(b.id, a.id, "3", 200); // a-b seq 2
    await send(c.id, b.id, "4", 200); // b-c seq 1
    await send(a.id, b.id, "5", 300); // a-b seq 3
    const key = (x: number, y: number) => `u:${Math.min(x, y)}:${Math.max(x, y)}`;
    const heads = async (since: number, limit: number) =>
      Object.fromEntries(
        (await store.recentHeads(since, limit)).map((h) => [h.conv, h.seq]),
      );
    assert.deepStrictEqual(await heads(150, 100), { [key(a.id, b.id)]: 3, [key(b.id, c.id)]: 1 });
    assert.deepStrictEqual(await heads(0, 100), {
      [key(a.id, b.id)]: 3,
      [key(a.id, c.id)]: 1,
      [key(b.id, c.id)]: 1,
    });
    // Only the last two rows are looked at: a-b's seq 3 and b-c's seq 1.
    assert.deepStrictEqual(await heads(0, 2), { [key(a.id, b.id)]: 3, [key(b.id, c.id)]: 1 });
    assert.deepStrictEqual(await heads(400, 100), {});
    assert.deepStrictEqual(await heads(0, 0), {});
  },
};
