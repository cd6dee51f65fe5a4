import assert from "node:assert/strict";
import { CMD_ACK, encode, messageFrame } from "../lib/protocol.ts";
import { Session, type SessionHandler } from "../lib/session.ts";
import { type HistoryReader, SessionDelivery } from "../lib/session_delivery.ts";
import type { StoredMessage } from "../lib/store.ts";
import { FakeConnection, ManualTimers } from "./_chat_helpers.ts";

const CONV = "u:1:2";

function msg(seq: number, userid = 2): StoredMessage {
  return {
    id: seq,
    userid,
    cmd: 10,
    dstid: userid === 2 ? 1 : 2,
    media: 1,
    content: `m${seq}`,
    pic: "",
    url: "",
    memo: "",
    amount: 0,
    cid: `c${seq}`,
    conv: CONV,
    seq,
    ts: seq,
  };
}

/** Messages 1..n of one conversation; records reads; can fail. */
class FakeHistory implements HistoryReader {
  readonly reads: string[] = [];
  /** Rows that differ from the default `msg(seq)` (e.g. the session's own). */
  readonly rows = new Map<number, StoredMessage>();
  fail = false;
  constructor(public last: number) {}
  listMessages(
    conv: string,
    options: { afterSeq?: number; beforeSeq?: number; limit: number },
  ): Promise<StoredMessage[]> {
    if (this.fail) return Promise.reject(new Error("store down"));
    const after = options.afterSeq ?? 0;
    this.reads.push(`${after}+${options.limit}`);
    const rows = [];
    for (let s = after + 1; s <= this.last && rows.length < options.limit; s++) {
      rows.push(this.rows.get(s) ?? msg(s));
    }
    return Promise.resolve(conv === CONV ? rows : []);
  }
  lastSeqs(): Promise<Map<string, number>> {
    return Promise.resolve(new Map([[CONV, this.last]]));
  }
}

const noop: SessionHandler = { onFrame: () => Promise.resolve(), onClose() {} };

function setup<S extends HistoryReader = FakeHistory>(
  last: number,
  options: { gate?: boolean; store?: S; holdBytes?: number } = {},
) {
  const conn = new FakeConnection();
  const session = new Session(conn, {
    id: "s",
    userId: 1,
    handler: noop,
    timers: new ManualTimers(),
  });
  const store = options.store ?? new FakeHistory(last);
  const delivery = new SessionDelivery(session, store, {
    pageSize: 3,
    ...(options.holdBytes === undefined ? {} : { holdBytes: options.holdBytes }),
  });
  if (!(options.gate ?? false)) delivery.openGate();
  const live = (seq: number) => delivery.deliver(msg(seq), encode(messageFrame(msg(seq))));
  const seqs = () => conn.frames().filter((f) => f["cmd"] === 10).map((f) => f["seq"]);
  return { conn, session, store, delivery, live, seqs };
}

Deno.test("SessionDelivery fills a hole left by the bus from the store", async () => {
  const { delivery, live, seqs, session } = setup(7);
  live(1);
  live(2);
  live(7); // 3-6 were dropped on the bus
  live(8);
  await delivery.idle();
  assert.deepStrictEqual(seqs(), [1, 2, 3, 4, 5, 6, 7, 8]);
  session.close("normal");
});

Deno.test("SessionDelivery skips a message it already sent", async () => {
  const { delivery, live, seqs, store, session } = setup(3);
  live(1);
  live(2);
  live(2);
  live(1);
  live(3);
  await delivery.idle();
  assert.deepStrictEqual(seqs(), [1, 2, 3]);
  assert.deepStrictEqual(store.reads, [], "in-order traffic never reads the store");
  session.close("normal");
});

Deno.test("SessionDelivery.own() sends the ack instead of an echo and counts the seq", async () => {
  const { conn, delivery, live, seqs, session } = setup(4);
  live(1);
  live(2);
  const ack = { cmd: CMD_ACK, cid: "c3", seq: 3, id: 3, conv: CONV, ts: 3, dup: false } as const;
  delivery.own(msg(3, 1), ack);
  delivery.own(msg(3, 1), { ...ack, dup: true }); // a retry is acked again
  live(4);
  await delivery.idle();
  assert.deepStrictEqual(seqs(), [1, 2, 4]);
  assert.deepStrictEqual(conn.frames().filter((f) => f["cmd"] === 20).map((f) => f["dup"]), [
    false,
    true,
  ]);
  session.close("normal");
});

Deno.test("SessionDelivery replays a catch-up before held live messages, each once", async () => {
  const { conn, delivery, live, seqs, session } = setup(10, { gate: true });
  live(9); // arrives while the gate is shut
  live(10);
  assert.deepStrictEqual(seqs(), []);
  assert.equal(session.queuedBytes, 0, "held frames are not in the send queue");
  await delivery.catchUp(new Map([[CONV, 4]]), false);
  delivery.openGate();
  live(11);
  await delivery.idle();
  assert.deepStrictEqual(seqs(), [5, 6, 7, 8, 9, 10, 11]);
  assert.deepStrictEqual(conn.frames().find((f) => f["cmd"] === 31), {
    cmd: 31,
    seqs: { [CONV]: 10 },
  });
  assert.equal(session.queuedBytes, 0);
  session.close("normal");
});

/** A {@linkcode FakeHistory} of two conversations, CONV and "g:7" (seqs 1..last each), counting lastSeqs() reads. */
class TwoConvHistory extends FakeHistory {
  lastSeqsReads = 0;
  override async listMessages(
    conv: string,
    options: { afterSeq?: number; beforeSeq?: number; limit: number },
  ): Promise<StoredMessage[]> {
    const rows = await super.listMessages(CONV, options);
    return conv === CONV ? rows : rows.map((r) => ({ ...r, cmd: 11, dstid: 7, conv }));
  }
  override lastSeqs(): Promise<Map<string, number>> {
    this.lastSeqsReads++;
    return Promise.resolve(new Map([[CONV, this.last], ["g:7", this.last]]));
  }
}

Deno.test("SessionDelivery replays a catch-up in parts as they come, reading the store once; all:true counts on the last part only", async () => {
  const store = new TwoConvHistory(3);
  const { conn, delivery, session } = setup(3, { gate: true, store });
  const sent = () =>
    conn.frames().filter((f) => f["cmd"] !== 31).map((f) => `${f["conv"]}#${f["seq"]}`);
  // A part's `all` would replay g:7 from 1 here, before the part naming it.
  await delivery.catchUp(new Map([[CONV, 1]]), true, { more: true });
  assert.equal(delivery.catchingUp, true);
  assert.deepStrictEqual(sent(), [`${CONV}#2`, `${CONV}#3`]);
  await delivery.catchUp(new Map([["g:7", 2]]), true);
  assert.equal(delivery.catchingUp, false);
  assert.deepStrictEqual(sent(), [`${CONV}#2`, `${CONV}#3`, "g:7#3"]);
  assert.equal(store.lastSeqsReads, 1);
  assert.deepStrictEqual(conn.frames().filter((f) => f["cmd"] === 31), [
    { cmd: 31, seqs: { [CONV]: 3 }, more: true },
    { cmd: 31, seqs: { [CONV]: 3, "g:7": 3 } },
  ]);
  // The next catch-up reads the store again.
  await delivery.catchUp(new Map(), false);
  assert.equal(store.lastSeqsReads, 2);
  session.close("normal");
});

Deno.test("SessionDelivery fills, between the parts of a catch-up, a conversation an earlier part replayed when its newest seq is announced", async () => {
  const store = new FakeHistory(3);
  const { delivery, session, seqs } = setup(3, { gate: true, store });
  await delivery.catchUp(new Map([[CONV, 1]]), false, { more: true });
  assert.deepStrictEqual(seqs(), [2, 3]);
  // Seq 4 is stored meanwhile; its packet is lost, and its node announces it.
  store.last = 4;
  delivery.head(CONV, 4);
  await delivery.catchUp(new Map(), false);
  assert.deepStrictEqual(seqs(), [2, 3, 4], "not held back until a next message or reconnect");
  delivery.openGate();
  assert.deepStrictEqual(seqs(), [2, 3, 4]);
  session.close("normal");
});

Deno.test("SessionDelivery ignores announcements before any catch-up while the gate is shut", async () => {
  const { delivery, session, seqs, store } = setup(3, { gate: true });
  delivery.head(CONV, 3);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepStrictEqual(store.reads, [], "the catch-up to come covers it: nothing read");
  await delivery.catchUp(new Map([[CONV, 3]]), false);
  assert.deepStrictEqual(seqs(), []);
  session.close("normal");
});

Deno.test("SessionDelivery.endParts() ends a catch-up in parts: a later part starts a new one", async () => {
  const store = new TwoConvHistory(3);
  const { delivery, session } = setup(3, { gate: true, store });
  await delivery.catchUp(new Map([[CONV, 1]]), false, { more: true });
  assert.equal(delivery.catchingUp, true);
  delivery.endParts();
  assert.equal(delivery.catchingUp, false);
  await delivery.catchUp(new Map([["g:7", 1]]), false, { more: true });
  assert.equal(store.lastSeqsReads, 2, "the store is read again");
  session.close("normal");
});

Deno.test("SessionDelivery keeps only the seqs of live messages held past holdBytes, and sends them from the store when the gate opens", async () => {
  const text = (seq: number) => encode(messageFrame(msg(seq)));
  const { delivery, live, seqs, session, store } = setup(12, {
    gate: true,
    holdBytes: 3 * text(1).length,
  });
  for (const seq of [5, 6, 7, 9, 8]) live(seq); // more than three frames' worth, one out of order
  await delivery.catchUp(new Map([[CONV, 2]]), false);
  assert.deepStrictEqual(seqs(), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "the catch-up read to the end");
  store.last = 14; // two more stored while the gate is still shut
  live(13);
  live(14);
  store.reads.length = 0;
  delivery.openGate();
  await delivery.idle();
  assert.deepStrictEqual(seqs(), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
  assert.deepStrictEqual(store.reads, ["12+2"], "one read, of the seqs the session lacks");
  // An old client (no catch-up): held seqs become its first live messages.
  const old = setup(6, { gate: true, holdBytes: 10 });
  for (const seq of [4, 5, 6]) old.live(seq);
  old.delivery.openGate();
  await old.delivery.idle();
  assert.deepStrictEqual(old.seqs(), [4, 5, 6]);
  assert.equal(old.session.closed, false);
  old.session.close("normal");
  session.close("normal");
});

Deno.test("SessionDelivery sends a late catch-up's older messages once, after live ones", async () => {
  const { delivery, live, seqs, session } = setup(6);
  live(5);
  live(6);
  await delivery.catchUp(new Map([[CONV, 2]]), false);
  await delivery.idle();
  assert.deepStrictEqual(seqs(), [5, 6, 3, 4]);
  session.close("normal");
});

Deno.test("SessionDelivery takes a catch-up seq past the stored last as the last: later live messages still come", async () => {
  // A client that sent a message's global id (1000) where its seq (1) belongs.
  const { conn, delivery, live, seqs, session } = setup(1, { gate: true });
  await delivery.catchUp(new Map([[CONV, 1000]]), false);
  delivery.openGate();
  live(2);
  live(3);
  await delivery.idle();
  assert.deepStrictEqual(conn.frames().find((f) => f["cmd"] === 31), {
    cmd: 31,
    seqs: { [CONV]: 1 },
  });
  assert.deepStrictEqual(seqs(), [2, 3]);
  session.close("normal");
});

Deno.test("SessionDelivery ignores catch-up for conversations the user is not in", async () => {
  const { conn, delivery, session } = setup(3);
  await delivery.catchUp(new Map([["g:99", 0]]), false);
  assert.deepStrictEqual(conn.frames(), [{ cmd: 31, seqs: {} }]);
  session.close("normal");
});

Deno.test("SessionDelivery closes the session with 1011 when the store fails", async () => {
  const { conn, delivery, live, store } = setup(5);
  live(1);
  store.fail = true;
  live(5);
  await delivery.idle();
  assert.equal(conn.closed?.code, 1011);
});

Deno.test("SessionDelivery acks, not echoes, the sender's own message when a later seq wins the race", async () => {
  // The sender's message 2 is stored; before its ack goes out, seq 3 from the
  // peer on another node arrives and the gap fill reads 2 from the store.
  const { conn, delivery, live, session, store } = setup(3);
  live(1);
  const own = msg(2, 1);
  store.rows.set(2, own);
  delivery.sending(own.cid);
  live(3);
  await delivery.idle();
  delivery.own(own, {
    cmd: CMD_ACK,
    cid: own.cid,
    seq: 2,
    id: 2,
    conv: CONV,
    ts: 2,
    dup: false,
  });
  await delivery.idle();
  const frames = conn.frames().map((f) => `${f["cmd"]}:${f["seq"]}`);
  assert.deepStrictEqual(frames, ["10:1", "20:2", "10:3"]);
  session.close("normal");
});

Deno.test("SessionDelivery still sends the sender's message as a frame after a failed store", async () => {
  const { conn, delivery, live, session, store } = setup(3);
  const own = msg(2, 1);
  store.rows.set(2, own);
  delivery.sending(own.cid);
  delivery.forget(own.cid);
  live(1);
  live(3);
  await delivery.idle();
  assert.deepStrictEqual(conn.frames().map((f) => `${f["cmd"]}:${f["seq"]}`), [
    "10:1",
    "10:2",
    "10:3",
  ]);
  session.close("normal");
});

Deno.test("SessionDelivery sends an own message once, as its ack, when its store write ends during a gap fill", async () => {
  // The race: the partner's seq 3 arrives first and starts a fill of 2; the own
  // write of seq 2 completes while that fill waits on the store. The fill must
  // send 2 as the ack, and the ack that own() queues must then be skipped.
  const { conn, delivery, live, store, session } = setup(3);
  store.rows.set(2, { ...msg(2, 1), cid: "mine" });
  let release = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  const read = store.listMessages.bind(store);
  store.listMessages = async (conv, options) => {
    await gate;
    return read(conv, options);
  };
  live(1);
  delivery.sending("mine");
  live(3); // starts the fill of seq 2
  const ack = { cmd: CMD_ACK, cid: "mine", seq: 2, id: 2, conv: CONV, ts: 2, dup: false } as const;
  delivery.own({ ...msg(2, 1), cid: "mine" }, ack);
  release();
  await delivery.idle();
  assert.deepStrictEqual(
    conn.frames().map((f) => `${f["cmd"]}#${f["seq"]}`),
    ["10#1", "20#2", "10#3"],
    "seq 2 once, as an ack, in order",
  );
  session.close("normal");
});

Deno.test("SessionDelivery holds an own ack until the bus has published, and later frames queue behind it in order", async () => {
  const { conn, delivery, live, session, store } = setup(3);
  live(1);
  const own = msg(2, 1);
  store.rows.set(2, own);
  delivery.sending(own.cid);
  const published = Promise.withResolvers<void>();
  const ack = { cmd: CMD_ACK, cid: own.cid, seq: 2, id: 2, conv: CONV, ts: 2, dup: false } as const;
  delivery.own(own, ack, published.promise);
  live(3); // the peer's reply, before this node's packet left
  await new Promise((resolve) => setTimeout(resolve, 20));
  const frames = () => conn.frames().map((f) => `${f["cmd"]}:${f["seq"]}`);
  assert.deepStrictEqual(frames(), ["10:1"], "no ack before the bus has the message");
  assert.ok(session.queuedBytes > 0, "the held frames count against the queue limit");
  published.resolve();
  await delivery.idle();
  assert.deepStrictEqual(frames(), ["10:1", "20:2", "10:3"]);
  assert.deepStrictEqual(store.reads, [], "waiting for the bus costs no gap fill");
  assert.equal(session.queuedBytes, 0);
  session.close("normal");
});

Deno.test("SessionDelivery follows from seq 1 only new 1:1 conversations and groups it was in at catch-up", async () => {
  // Heads in the store: a 1:1 and a group listed at catch-up, and three that were not.
  const heads = new Map([["u:1:2", 2], ["g:11", 4], ["u:1:5", 1], ["g:10", 2], ["g:12", 1]]);
  const row = (conv: string, seq: number): StoredMessage => ({
    ...msg(seq),
    cmd: conv.startsWith("g:") ? 11 : 10,
    dstid: conv.startsWith("g:") ? Number(conv.slice(2)) : 1,
    conv,
    cid: `${conv}/${seq}`,
  });
  const store = {
    listMessages(conv: string, options: { afterSeq?: number; limit: number }) {
      const rows = [];
      for (let s = (options.afterSeq ?? 0) + 1; s <= (heads.get(conv) ?? 0); s++) {
        rows.push(row(conv, s));
      }
      return Promise.resolve(rows.slice(0, options.limit));
    },
    lastSeqs: () => Promise.resolve(new Map([["u:1:2", 2], ["g:11", 4]])),
    groupIds: () => Promise.resolve([10, 11]),
  };
  const { conn, session, delivery } = setup(0, { gate: true, store });
  await delivery.catchUp(new Map(), false);
  delivery.openGate();
  for (const [conv, seq] of heads) delivery.head(conv, seq);
  await delivery.idle();
  const got = conn.frames().filter((f) => f["cmd"] === 10 || f["cmd"] === 11)
    .map((f) => `${f["conv"]}#${f["seq"]}`);
  // u:1:2 and g:11 were listed (the client asked for neither); g:12 was joined after catch-up.
  assert.deepStrictEqual(got, ["u:1:5#1", "g:10#1", "g:10#2"]);
  session.close("normal");
});

Deno.test("SessionDelivery follows a group joined after catch-up from its newest seq: a head repairs the first message lost on the bus", async () => {
  let last = 5; // g:12 had five messages before the join
  const row = (seq: number): StoredMessage => ({
    ...msg(seq),
    cmd: 11,
    dstid: 12,
    conv: "g:12",
    cid: `g12/${seq}`,
  });
  const store = {
    listMessages(conv: string, options: { afterSeq?: number; beforeSeq?: number; limit: number }) {
      if (conv !== "g:12") return Promise.resolve([]);
      const rows = [];
      const below = Math.min(options.beforeSeq ?? Infinity, last + 1);
      for (let s = (options.afterSeq ?? 0) + 1; s < below; s++) rows.push(row(s));
      return Promise.resolve(
        options.beforeSeq === undefined ? rows.slice(0, options.limit) : rows.slice(-options.limit),
      );
    },
    lastSeqs: () => Promise.resolve(new Map<string, number>()),
    groupIds: () => Promise.resolve([]),
  };
  const { conn, session, delivery } = setup(0, { gate: true, store });
  await delivery.catchUp(new Map(), false);
  delivery.openGate();
  delivery.joined("g:12");
  await delivery.idle();
  last = 7; // 6 was lost on the bus; the sender's node announces 7's head first
  delivery.head("g:12", 6);
  await delivery.idle();
  delivery.deliver(row(7), encode(messageFrame(row(7))));
  await delivery.idle();
  const got = conn.frames().filter((f) => f["cmd"] === 11).map((f) => f["seq"]);
  assert.deepStrictEqual(got, [6, 7], "nothing from before the join, nothing lost after it");
  session.close("normal");
});

Deno.test("SessionDelivery.joined() before the catch-up, or for a group it follows, reads nothing", async () => {
  const { delivery, live, session, store } = setup(3, { gate: true });
  delivery.joined("g:1");
  await delivery.idle();
  assert.deepStrictEqual(store.reads, []);
  await delivery.catchUp(new Map([[CONV, 3]]), false);
  delivery.openGate();
  live(4);
  await delivery.idle();
  store.reads.length = 0; // the catch-up's own
  delivery.joined(CONV);
  await delivery.idle();
  assert.deepStrictEqual(store.reads, []);
  session.close("normal");
});

/** Messages 1..last with some seqs missing, as no store writes today. */
class GappyHistory extends FakeHistory {
  constructor(last: number, readonly missing: ReadonlySet<number>) {
    super(last);
  }
  override async listMessages(
    conv: string,
    options: { afterSeq?: number; beforeSeq?: number; limit: number },
  ): Promise<StoredMessage[]> {
    const rows = await super.listMessages(conv, { ...options, limit: options.limit * 4 });
    return rows.filter((r) => !this.missing.has(r.seq)).slice(0, options.limit);
  }
}

Deno.test("SessionDelivery gives up on a hole the store cannot fill instead of reading it again for ever", async () => {
  const store = new GappyHistory(9, new Set([2, 3, 4]));
  const { live, seqs, session } = setup(9, { store });
  live(1);
  live(5); // the store has 5, 6, 7 after 1: nothing for 2-4
  for (let i = 0; i < 20 && seqs().length < 2; i++) await new Promise((r) => setTimeout(r, 5));
  assert.deepStrictEqual(seqs(), [1, 5]);
  assert.ok(store.reads.length < 5, `${store.reads.length} reads`);
  session.close("normal");
});
