import assert from "node:assert/strict";
import type { Bus, BusEnvelope, BusStats } from "../lib/bus.ts";
import { LocalBus } from "../lib/bus_local.ts";
import { CLOSE } from "../lib/close_codes.ts";
import { delay, startChatServer, storeKinds, type TestSocket } from "./_chat_helpers.ts";
import { rawHandshake, rawSendText, readUntilClose } from "./_raw_ws.ts";
import { newMessage } from "./_store_samples.ts";

type Frame = Record<string, unknown>;
const isMsg = (f: Frame) => f["cmd"] === 10 || f["cmd"] === 11;

/**
 * Send messages `from..to` (cids `<prefix><n>`) with at most `window`
 * unacknowledged, like a well-behaved client; `onAck` sees each acked count.
 */
async function sendMany(
  sock: TestSocket,
  options: {
    cmd: 10 | 11;
    dstid: number;
    from: number;
    to: number;
    prefix: string;
    window?: number;
    content?: (n: number) => string;
  },
): Promise<void> {
  const window = options.window ?? 32;
  const acked = () =>
    sock.frames.filter((f) => f["cmd"] === 20 && String(f["cid"]).startsWith(options.prefix))
      .length;
  for (let n = options.from; n <= options.to; n++) {
    while (n - options.from - acked() >= window) {
      await sock.waitFor(() => false, 0, 0).catch(() => {});
      await sock.waitFor(
        (f) => f["cmd"] === 20,
        sock.frames.filter((f) => f["cmd"] === 20).length + 1,
      );
    }
    sock.send({
      cmd: options.cmd,
      dstid: options.dstid,
      media: 1,
      content: options.content?.(n) ?? `n${n}`,
      cid: `${options.prefix}${n}`,
    });
  }
  await sock.waitFor(
    (f) => f["cmd"] === 20 && String(f["cid"]).startsWith(options.prefix),
    options.to - options.from + 1,
    30_000,
  );
  const errors = sock.frames.filter((f) => f["cmd"] === 21);
  assert.deepStrictEqual(errors, [], "the sender got no error frames");
}

function seqs(sock: TestSocket): number[] {
  return sock.frames.filter(isMsg).map((f) => Number(f["seq"]));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

for (const kind of storeKinds()) {
  Deno.test(`[${kind}] a receiver killed mid-stream catches up every message exactly once, in order`, async () => {
    await using srv = await startChatServer({ store: kind });
    const ann = await srv.user("ann");
    const bob = await srv.user("bob");
    await srv.store.addFriendship(ann.id, bob.id, 0);
    const a = await srv.connect(ann);
    const b1 = await srv.connect(bob);
    const total = 900;
    const sending = sendMany(a, { cmd: 10, dstid: bob.id, from: 1, to: total, prefix: "k" });
    // Kill the receiver while messages are flowing.
    await b1.waitFor(isMsg, 100, 20_000);
    b1.ws.close();
    await b1.closed;
    const seen = seqs(b1);
    const last = seen.at(-1) ?? 0;
    assert.deepStrictEqual(seen, range(1, last), "live delivery was in order, without gaps");
    // 500 more are stored while Bob is away.
    await a.waitFor((f) => f["cmd"] === 20, last + 500, 30_000);
    const b2 = await srv.connect(bob, { catchUp: false });
    const conv = String(b1.frames.find(isMsg)?.["conv"]);
    b2.send({ cmd: 30, seqs: { [conv]: last } });
    await sending;
    await b2.waitFor(isMsg, total - last, 30_000);
    await delay(100);
    assert.deepStrictEqual(seqs(b2), range(last + 1, total), "every message once, in order");
    const done = b2.frames.find((f) => f["cmd"] === 31);
    assert.ok(done !== undefined, "catch-up ended with cmd 31");
    assert.ok(Number((done["seqs"] as Record<string, number>)[conv]) >= last + 500);
    assert.deepStrictEqual(
      b2.frames.filter(isMsg).map((f) => f["content"]),
      range(last + 1, total).map((n) => `n${n}`),
    );
  });

  Deno.test(`[${kind}] catch-up with all:true replays every group conversation while live messages flow`, async () => {
    await using srv = await startChatServer({ store: kind });
    const ann = await srv.user("ann");
    const bob = await srv.user("bob");
    const g = await srv.store.createGroup(
      { name: "g", ownerId: ann.id, icon: "", cate: 0, memo: "" },
      { now: 0, maxPerOwner: 5 },
    );
    await srv.store.joinGroup(bob.id, g.id, 0);
    const a = await srv.connect(ann);
    await sendMany(a, { cmd: 11, dstid: g.id, from: 1, to: 150, prefix: "p" });
    const b = await srv.connect(bob, { catchUp: false });
    const sending = sendMany(a, { cmd: 11, dstid: g.id, from: 151, to: 400, prefix: "q" });
    await delay(5);
    b.send({ cmd: 30, all: true });
    await sending;
    await b.waitFor(isMsg, 400, 30_000);
    await delay(100);
    // Replay first, then live traffic, each message once.
    assert.deepStrictEqual(seqs(b), range(1, 400));
    assert.ok(b.frames.some((f) => f["cmd"] === 31));
    assert.equal(a.frames.filter(isMsg).length, 0, "the sender got no echo");
  });

  Deno.test(`[${kind}] a stuck client overflows and is closed with 4000 while others get messages promptly`, async () => {
    await using srv = await startChatServer({
      store: kind,
      session: { maxQueueBytes: 512 * 1024 },
    });
    const ann = await srv.user("ann");
    const bob = await srv.user("bob");
    const stuck = await srv.user("stuck");
    const g = await srv.store.createGroup(
      { name: "g", ownerId: ann.id, icon: "", cate: 0, memo: "" },
      { now: 0, maxPerOwner: 5 },
    );
    await srv.store.joinGroup(bob.id, g.id, 0);
    await srv.store.joinGroup(stuck.id, g.id, 0);
    const a = await srv.connect(ann);
    const b = await srv.connect(bob);
    // A raw TCP client that completes the handshake and then never reads.
    const raw = await rawHandshake(srv.port, `/chat?token=${stuck.token}`);
    assert.equal(raw.status, 101);
    await rawSendText(raw.conn, '{"cmd":30,"all":true}');
    await delay(50);
    assert.equal(srv.chat.stats().sessions, 3);
    const big = "x".repeat(16_000);
    const total = 400; // ~6.4 MB: more than the kernel buffers, so the queue grows
    await sendMany(a, {
      cmd: 11,
      dstid: g.id,
      from: 1,
      to: total,
      prefix: "s",
      window: 8,
      content: (n) => `${n}:${big}`,
    });
    await b.waitFor(isMsg, total, 30_000);
    assert.deepStrictEqual(seqs(b), range(1, total));
    // Bob got each message soon after Ann's ack, the stuck client never held him up.
    const ackAt = new Map<string, number>();
    a.frames.forEach((f, i) => {
      if (f["cmd"] === 20) ackAt.set(String(f["cid"]), a.times[i]!);
    });
    let worst = 0;
    b.frames.forEach((f, i) => {
      if (!isMsg(f)) return;
      const acked = ackAt.get(String(f["cid"]));
      if (acked !== undefined) worst = Math.max(worst, b.times[i]! - acked);
    });
    assert.ok(worst < 1000, `worst delay ${Math.round(worst)} ms`);
    assert.equal(srv.chat.stats().sessions, 2, "the stuck session was closed");
    // On the wire, after what fit in the buffers, comes close code 4000.
    const { texts, closeCode } = await readUntilClose(raw.conn, raw.rest);
    raw.conn.close();
    assert.equal(closeCode, CLOSE.queueOverflow.code);
    assert.ok(texts > 0 && texts < total, `the stuck client got ${texts} frames`);
  });
}

/** A LocalBus whose packets to other nodes "leave" only when the test says so. */
class HeldBus implements Bus {
  readonly held: PromiseWithResolvers<void>[] = [];
  #local = new LocalBus();
  publish(envelope: BusEnvelope): Promise<void> {
    this.#local.publish(envelope); // local delivery at once, like WireBus
    const sent = Promise.withResolvers<void>();
    this.held.push(sent);
    return sent.promise;
  }
  subscribe(handler: (envelope: BusEnvelope) => void): () => void {
    return this.#local.subscribe(handler);
  }
  ping(): Promise<void> {
    return this.#local.ping();
  }
  close(): Promise<void> {
    return this.#local.close();
  }
  stats(): BusStats {
    return this.#local.stats();
  }
}

Deno.test("/chat acks only after the bus took the message: a node killed before its packet left has acked nothing", async () => {
  const bus = new HeldBus();
  await using srv = await startChatServer({ bus });
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  const a = await srv.connect(ann);
  const b = await srv.connect(bob);
  a.send({ cmd: 10, dstid: bob.id, media: 1, content: "first", cid: "h1" });
  await b.waitFor(isMsg); // local fan-out does not wait for the bus
  b.send({ cmd: 10, dstid: ann.id, media: 1, content: "reply", cid: "h2" });
  for (let i = 0; i < 200 && bus.held.length < 2; i++) await delay(5);
  assert.equal(bus.held.length, 2, "both messages were stored and published");
  await delay(50);
  const chat = (f: Frame) => f["cmd"] === 10 || f["cmd"] === 20;
  const seen = (s: TestSocket) => s.frames.filter(chat).map((f) => `${f["cmd"]}:${f["seq"]}`);
  assert.deepStrictEqual(seen(a), [], "no ack, and nothing behind it, while the packet is held");
  assert.deepStrictEqual(seen(b), ["10:1"]);
  for (const sent of bus.held) sent.resolve();
  await a.waitFor(isMsg);
  await b.waitFor((f) => f["cmd"] === 20);
  assert.deepStrictEqual(seen(a), ["20:1", "10:2"]);
  assert.deepStrictEqual(seen(b), ["10:1", "20:2"]);
});

Deno.test("a catch-up of large messages, several times the send queue, reaches a reading client whole instead of closing it with 4000", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  // 300 messages of 12,000 CJK characters (about 36 KB of UTF-8 each; 10 MB in all), sent while
  // Bob was away: a 200-row page of them is several times the 1 MiB queue.
  const content = "消".repeat(12_000);
  const total = 300;
  for (let i = 1; i <= total; i++) {
    await srv.store.appendMessage(
      newMessage(ann.id, { dstid: bob.id, cid: `big-${i}`, content }),
      i,
    );
  }
  const b = await srv.connect(bob, { catchUp: false });
  b.send({ cmd: 30, all: true });
  await b.waitFor((f) => f["cmd"] === 31, 1, 30_000);
  const got = b.frames.filter(isMsg);
  assert.deepStrictEqual(got.map((f) => f["seq"]), range(1, total), "every message, in order");
  assert.equal(b.ws.readyState, WebSocket.OPEN, "not closed for a full queue");
});
