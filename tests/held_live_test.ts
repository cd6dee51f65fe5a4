/**
 * Live messages held while a session's catch-up runs: frames up to a byte
 * budget, then only their seqs (`lib/held_live.ts`), so a long catch-up
 * under heavy traffic neither grows memory nor closes a reading client.
 */

import assert from "node:assert/strict";
import { HeldLive } from "../lib/held_live.ts";
import type { StoredMessage } from "../lib/store.ts";
import { type ChatServer, startChatServer, type TestSocket } from "./_chat_helpers.ts";
import { newMessage, plainGroup } from "./_store_samples.ts";
import { storedMessage } from "../lib/_batch_sql.ts";

type Frame = Record<string, unknown>;
const isMsg = (f: Frame) => f["cmd"] === 10 || f["cmd"] === 11;

function row(conv: string, seq: number): StoredMessage {
  const message = newMessage(1, { cmd: 11, dstid: 1, cid: `${conv}/${seq}`, content: "x" });
  return storedMessage(message, { id: seq, conv, seq, ts: seq });
}

Deno.test("HeldLive keeps frames within its budget, then only each conversation's first and last seq", () => {
  const held = new HeldLive(10);
  held.add(row("g:1", 4), "aaaa");
  held.add(row("g:2", 7), "bbbb");
  assert.deepStrictEqual(held.frames.map((f) => f.text), ["aaaa", "bbbb"]);
  assert.equal(held.ranges, undefined);
  assert.equal(held.bytes, 8);
  held.add(row("g:1", 6), "cccc"); // past 10: everything becomes seqs
  held.add(row("g:1", 5), "dddd");
  held.add(row("g:3", 1), "eeee");
  assert.deepStrictEqual(held.frames, []);
  assert.equal(held.bytes, 0);
  assert.deepStrictEqual([...held.ranges ?? []], [
    ["g:1", { first: 4, last: 6 }],
    ["g:2", { first: 7, last: 7 }],
    ["g:3", { first: 1, last: 1 }],
  ]);
});

/** Wait for `n` messages on `s`; fails at once, naming the code, if it closes first. */
async function messages(s: TestSocket, n: number): Promise<void> {
  const closed = s.closed.then((code) => Promise.reject(new Error(`Closed with ${code}`)));
  await Promise.race([s.waitFor(isMsg, n, 20_000), closed]);
}

/** Ann owns a group Bob is in; Ann's socket is connected and caught up. */
async function groupOfTwo(srv: ChatServer) {
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  const g = await plainGroup(srv.store, ann.id);
  await srv.store.joinGroup(bob.id, g.id, 0);
  return { ann, bob, g, a: await srv.connect(ann) };
}

/** Ann sends `n` group messages of 16,000 characters (1.6 MB for 100), 16 unacked at most. */
async function flood(a: TestSocket, groupId: number, n: number): Promise<void> {
  const big = "x".repeat(16_000);
  const acks = () => a.frames.filter((f) => f["cmd"] === 20).length;
  const before = acks();
  for (let i = 1; i <= n; i++) {
    if (i - (acks() - before) > 16) await a.waitFor((f) => f["cmd"] === 20, before + i - 16);
    a.send({ cmd: 11, dstid: groupId, media: 1, content: `${i}:${big}`, cid: `f${i}` });
  }
  await a.waitFor((f) => f["cmd"] === 20, before + n, 20_000);
}

Deno.test("an old client held past the 1 MiB queue during its grace period stays open and gets every message once, in order", async () => {
  await using srv = await startChatServer({ catchUpGraceMs: 6_000 });
  const { bob, g, a } = await groupOfTwo(srv);
  const b = await srv.connect(bob, { catchUp: false });
  await flood(a, g.id, 100);
  // Else the gate opened mid-flood and the queue never held it all.
  assert.equal(b.frames.filter(isMsg).length, 0, "the flood came while the gate was shut");
  await messages(b, 100);
  assert.deepStrictEqual(
    b.frames.filter(isMsg).map((f) => f["seq"]),
    Array.from({ length: 100 }, (_, i) => i + 1),
  );
  assert.equal(b.ws.readyState, WebSocket.OPEN, "not closed with 4000");
});

Deno.test("live messages held during a catch-up in parts, past the 1 MiB queue, come from the store after its last part", async () => {
  await using srv = await startChatServer();
  const { bob, g, a } = await groupOfTwo(srv);
  const b = await srv.connect(bob, { catchUp: false });
  b.send({ cmd: 30, seqs: {}, more: true });
  await b.waitFor((f) => f["cmd"] === 31);
  await flood(a, g.id, 100);
  assert.equal(b.frames.filter(isMsg).length, 0, "held while the catch-up is not done");
  b.send({ cmd: 30, seqs: {}, all: true });
  await messages(b, 100);
  assert.deepStrictEqual(
    b.frames.filter(isMsg).map((f) => f["seq"]),
    Array.from({ length: 100 }, (_, i) => i + 1),
  );
  assert.equal(b.ws.readyState, WebSocket.OPEN);
});
