/**
 * A catch-up of more conversations than one cmd-30 frame may name (1,000):
 * the client sends it in parts (`more: true` on all but the last), the
 * server replays each and holds live messages until the last; the bundled
 * client splits on its own.
 */

import assert from "node:assert/strict";
import { ChatConnection } from "../static/js/connection.js";
import type { ChatServer, TestSocket } from "./_chat_helpers.ts";
import { delay, startChatServer } from "./_chat_helpers.ts";
import { newMessage, newUser } from "./_store_samples.ts";

type Frame = Record<string, unknown>;
const isMsg = (f: Frame) => f["cmd"] === 10 || f["cmd"] === 11;

/**
 * Ann and `n` more users straight in the store, each of whom sent Ann two
 * messages (seqs 1 and 2): `n` conversations with messages. Returns Ann and
 * her conversation keys, in the users' order.
 */
async function annWithChats(
  srv: ChatServer,
  n: number,
): Promise<{ ann: { id: number; token: string }; convs: string[] }> {
  const ann = await srv.user("ann");
  const convs: string[] = [];
  const batch = [];
  for (let i = 0; i < n; i++) {
    const peer = await srv.store.createUser(newUser(`1370000${String(i).padStart(4, "0")}`), 1);
    const [low, high] = peer.id < ann.id ? [peer.id, ann.id] : [ann.id, peer.id];
    convs.push(`u:${low}:${high}`);
    for (const k of [1, 2]) {
      batch.push({ message: newMessage(peer.id, { dstid: ann.id, cid: `c${i}-${k}` }), now: k });
    }
  }
  for (let i = 0; i < batch.length; i += 500) {
    await srv.store.appendMessages(batch.slice(i, i + 500));
  }
  return { ann, convs };
}

/** `{conv: seq}` for every key. */
function claim(convs: readonly string[], seq: number): Record<string, number> {
  return Object.fromEntries(convs.map((c) => [c, seq]));
}

Deno.test("the bundled client catches up 4,500 conversations with messages (five parts): every missed message once", async () => {
  await using srv = await startChatServer();
  const { ann, convs } = await annWithChats(srv, 4_500);
  // The device has seq 1 of each; seq 2 came while it was away.
  const frames: Frame[] = [];
  const conn = new ChatConnection({
    url: srv.url(`id=${ann.id}&token=${encodeURIComponent(ann.token)}`),
    catchUp: () => claim(convs, 1),
  });
  const allDone = Promise.withResolvers<void>();
  conn.addEventListener("frame", (event: Event) => {
    const frame = (event as CustomEvent<Frame>).detail;
    frames.push(frame);
    if (frame["cmd"] === 31 && frame["more"] !== true) allDone.resolve();
    if (frame["cmd"] === 21) allDone.reject(new Error(`Refused: ${frame["msg"]}`));
  });
  conn.start();
  try {
    await allDone.promise;
  } finally {
    conn.stop();
  }
  const got = frames.filter(isMsg).map((f) => `${f["conv"]}#${f["seq"]}`);
  assert.equal(got.length, 4_500, "one missed message per conversation");
  assert.deepStrictEqual(new Set(got), new Set(convs.map((c) => `${c}#2`)));
  const done = frames.filter((f) => f["cmd"] === 31);
  assert.deepStrictEqual(done.map((f) => f["more"]), [true, true, true, true, undefined]);
  const last = done.at(-1)?.["seqs"] as Record<string, number>;
  assert.equal(Object.keys(last).length, 4_500, "the last part's done frame covers every one");
  assert.ok(Object.values(last).every((seq) => seq === 2));
});

/** Open Ann's socket without the helper's catch-up. */
async function rawAnn(srv: ChatServer, ann: { id: number; token: string }): Promise<TestSocket> {
  return await srv.connect(ann, { catchUp: false });
}

Deno.test("a catch-up in parts holds live messages until its last part, also past the grace period", async () => {
  await using srv = await startChatServer({ catchUpGraceMs: 100 });
  const { ann, convs } = await annWithChats(srv, 1_100);
  const cy = await srv.user("cy");
  await srv.store.addFriendship(ann.id, cy.id, 0);
  await srv.store.appendMessages([1, 2].map((k) => ({
    message: newMessage(cy.id, { dstid: ann.id, cid: `cy-${k}` }),
    now: k,
  })));
  const cyConv = `u:${Math.min(ann.id, cy.id)}:${Math.max(ann.id, cy.id)}`;
  const c = await srv.connect(cy);
  const a = await rawAnn(srv, ann);
  a.send({ cmd: 30, seqs: claim(convs.slice(0, 1_000), 1), more: true });
  await a.waitFor((f) => f["cmd"] === 31, 1, 10_000);
  // Long past the grace period, Cy writes in a conversation of the second part.
  await delay(300);
  c.send({ cmd: 10, dstid: ann.id, media: 1, content: "live", cid: "cy-live" });
  await c.waitFor((f) => f["cmd"] === 20);
  await delay(100);
  assert.deepStrictEqual(
    a.frames.filter((f) => f["conv"] === cyConv).map((f) => f["seq"]),
    [],
    "the live message is held while the catch-up is not done",
  );
  a.send({ cmd: 30, seqs: { ...claim(convs.slice(1_000), 1), [cyConv]: 1 }, all: true });
  await a.waitFor((f) => f["cmd"] === 31, 2, 10_000);
  await a.waitFor((f) => f["conv"] === cyConv, 2);
  await delay(50);
  assert.deepStrictEqual(
    a.frames.filter((f) => f["conv"] === cyConv).map((f) => f["seq"]),
    [2, 3],
    "the replay first, then the live message",
  );
  assert.equal(a.frames.filter(isMsg).length, 1_100 + 2, "every other conversation's seq 2 too");
  const done = a.frames.filter((f) => f["cmd"] === 31).map((f) => f["more"]);
  assert.deepStrictEqual(done, [true, undefined], "a part's done frame says more is coming");
});

Deno.test("parts naming more conversations than the user has (plus one frame's worth) are refused, and live messages flow again", async () => {
  await using srv = await startChatServer({ catchUpGraceMs: 100 });
  const { ann, convs } = await annWithChats(srv, 3);
  const bob = await srv.user("bob");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  const b = await srv.connect(bob);
  const a = await rawAnn(srv, ann);
  // Strangers' conversations, never Ann's: 1,003 may be named (her 3, plus 1,000).
  const strangers = Array.from({ length: 1_000 }, (_, i) => `u:${900_000 + i}:${990_000 + i}`);
  a.send({ cmd: 30, seqs: claim(convs, 1), more: true });
  a.send({ cmd: 30, seqs: claim(strangers, 0), more: true });
  const [part] = await a.waitFor((f) => f["cmd"] === 31, 2);
  assert.deepStrictEqual(part?.["seqs"], claim(convs, 2));
  a.send({ cmd: 30, seqs: { "u:1:2": 0 }, more: true });
  const [refused] = await a.waitFor((f) => f["cmd"] === 21);
  assert.equal(refused?.["code"], "bad_request");
  assert.match(String(refused?.["msg"]), /at most 1003 conversations/);
  // The refused catch-up is over: live messages are no longer held.
  b.send({ cmd: 10, dstid: ann.id, media: 1, content: "after", cid: "b1" });
  const [live] = await a.waitFor((f) => isMsg(f) && f["content"] === "after");
  assert.equal(live?.["seq"], 1);
  assert.equal(a.ws.readyState, WebSocket.OPEN);
});

Deno.test("a part the session refuses (a bad frame) does not hold live messages for good: they flow once no next part comes in time", async () => {
  await using srv = await startChatServer({ catchUpGraceMs: 100, catchUpPartsWaitMs: 500 });
  const { ann, convs } = await annWithChats(srv, 3);
  const bob = await srv.user("bob");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  const b = await srv.connect(bob);
  const a = await rawAnn(srv, ann);
  a.send({ cmd: 30, seqs: claim(convs, 1), more: true });
  await a.waitFor((f) => f["cmd"] === 31);
  // The last part never reaches the catch-up: the session's parser refuses it.
  a.send({ cmd: 30, seqs: { "not a conversation": 1 }, all: true });
  const [refused] = await a.waitFor((f) => f["cmd"] === 21);
  assert.equal(refused?.["code"], "bad_request");
  const sentAt = performance.now();
  b.send({ cmd: 10, dstid: ann.id, media: 1, content: "after", cid: "b1" });
  const [live] = await a.waitFor((f) => isMsg(f) && f["content"] === "after", 1, 5_000);
  assert.equal(live?.["seq"], 1);
  assert.ok(performance.now() - sentAt > 200, "held until the wait for the next part ran out");
  // A later part is a new catch-up, answered as any.
  a.send({ cmd: 30, seqs: claim(convs, 2), all: true });
  const done = await a.waitFor((f) => f["cmd"] === 31, 2);
  assert.equal(done[1]?.["more"], undefined);
});

Deno.test("empty parts cannot hold live messages for ever: a catch-up takes only as many parts as its conversations need, plus one", async () => {
  await using srv = await startChatServer({ catchUpGraceMs: 100 });
  const { ann } = await annWithChats(srv, 3);
  const bob = await srv.user("bob");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  const b = await srv.connect(bob);
  const a = await rawAnn(srv, ann);
  // 3 conversations plus 1,000 fit in 2 parts; a third is allowed, a fourth refused.
  for (let i = 0; i < 3; i++) a.send({ cmd: 30, seqs: {}, more: true });
  await a.waitFor((f) => f["cmd"] === 31, 3);
  a.send({ cmd: 30, seqs: {}, more: true });
  const [refused] = await a.waitFor((f) => f["cmd"] === 21);
  assert.equal(refused?.["code"], "bad_request");
  assert.match(String(refused?.["msg"]), /at most 3 parts/);
  b.send({ cmd: 10, dstid: ann.id, media: 1, content: "after", cid: "b1" });
  const [live] = await a.waitFor((f) => isMsg(f) && f["content"] === "after");
  assert.equal(live?.["seq"], 1);
});

Deno.test("a single catch-up frame naming over 1,000 conversations is still refused, as before", async () => {
  await using srv = await startChatServer();
  const { ann, convs } = await annWithChats(srv, 1_001);
  const a = await rawAnn(srv, ann);
  a.send({ cmd: 30, seqs: claim(convs, 1), all: true });
  const [refused] = await a.waitFor((f) => f["cmd"] === 21);
  assert.match(String(refused?.["msg"]), /more than 1000 conversations/);
  await delay(50);
  assert.equal(a.frames.filter(isMsg).length, 0);
});
