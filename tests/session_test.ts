import assert from "node:assert/strict";
import { CLOSE } from "../lib/close_codes.ts";
import { ClientError } from "../lib/errors.ts";
import {
  Session,
  type SessionHandler,
  type SessionOptions,
  type WorkFrame,
} from "../lib/session.ts";
import { FakeConnection, ManualTimers } from "./_chat_helpers.ts";

/** A handler that records frames and closes; `act` decides what a frame does. */
class RecordingHandler implements SessionHandler {
  readonly frames: WorkFrame[] = [];
  readonly closes: number[] = [];
  act: (frame: WorkFrame) => Promise<void> = () => Promise.resolve();
  async onFrame(_session: Session, frame: WorkFrame): Promise<void> {
    this.frames.push(frame);
    await this.act(frame);
  }
  onClose(_session: Session, code: number): void {
    this.closes.push(code);
  }
}

function setup(options: SessionOptions & { stillValid?: () => Promise<boolean> } = {}) {
  const timers = new ManualTimers();
  const conn = new FakeConnection();
  const handler = new RecordingHandler();
  const session = new Session(conn, {
    timers,
    ...options,
    id: "s1",
    userId: 1,
    handler,
  });
  return { timers, conn, handler, session };
}

const TEXT = JSON.stringify({ cmd: 10, dstid: 2, media: 1, content: "hi", cid: "c1" });

Deno.test("Session answers a heartbeat with a heartbeat", () => {
  const { conn, handler, session } = setup();
  session.receive('{"cmd":0}');
  assert.deepStrictEqual(conn.frames(), [{ cmd: 0 }]);
  assert.equal(handler.frames.length, 0);
  session.close("normal");
});

Deno.test("Session answers junk with an error frame and stays open", async () => {
  const { conn, handler, session } = setup();
  session.receive("hello,world!");
  session.receive('{"cmd":10,"dstid":2,"media":42,"content":"x"}');
  session.receive(TEXT);
  await session.settled();
  const frames = conn.frames();
  assert.equal(frames.length, 2);
  assert.deepStrictEqual(frames[0], {
    cmd: 21,
    code: "bad_request",
    msg: "Frame is not valid JSON",
    retryable: false,
  });
  assert.match(String(frames[1]?.["msg"]), /media/);
  assert.equal(session.closed, false);
  assert.equal(handler.frames.length, 1);
  session.close("normal");
});

Deno.test("Session closes with 1008 after 20 bad frames in a row, not before", async (t) => {
  await t.step("a good frame resets the count", async () => {
    const { session } = setup();
    for (let i = 0; i < 19; i++) session.receive("junk");
    session.receive(TEXT);
    for (let i = 0; i < 19; i++) session.receive("junk");
    await session.settled();
    assert.equal(session.closed, false);
    session.close("normal");
  });
  await t.step("the twentieth in a row closes", () => {
    const { conn, handler, session } = setup();
    for (let i = 0; i < 20; i++) session.receive("junk");
    assert.deepStrictEqual(conn.closed, {
      code: CLOSE.abuse.code,
      reason: CLOSE.abuse.reason,
    });
    assert.deepStrictEqual(handler.closes, [1008]);
  });
});

Deno.test("Session closes with 4001 after the idle timeout and clears its timers", () => {
  const { timers, conn, handler, session } = setup({ idleTimeoutMs: 60_000 });
  timers.advance(59_000);
  session.receive('{"cmd":0}'); // heartbeat keeps it alive
  timers.advance(59_000);
  assert.equal(session.closed, false);
  timers.advance(1_000);
  assert.equal(session.closed, true);
  assert.equal(conn.closed?.code, CLOSE.idleTimeout.code);
  assert.deepStrictEqual(handler.closes, [4001]);
  assert.equal(timers.pending, 0);
});

Deno.test("Session with idleTimeoutMs 0 (CHAT_IDLE_TIMEOUT=0) keeps a silent client and arms no idle timer", () => {
  const { timers, session } = setup({ idleTimeoutMs: 0 });
  assert.equal(timers.pending, 0);
  timers.advance(24 * 3600 * 1000);
  assert.equal(session.closed, false);
  session.close("normal");
});

Deno.test("Session closes with 4000 when the outbound queue would pass its byte limit", () => {
  const { conn, handler, session } = setup({ maxQueueBytes: 100 });
  assert.equal(session.send("x".repeat(60)), true);
  conn.bufferedAmount = 60; // the client is not reading
  assert.equal(session.send("y".repeat(30)), true);
  conn.bufferedAmount = 90;
  assert.equal(session.send("z".repeat(11)), false);
  assert.equal(conn.closed?.code, CLOSE.queueOverflow.code);
  assert.deepStrictEqual(handler.closes, [4000]);
  assert.equal(session.send("after"), false);
  assert.equal(conn.sent.length, 2);
});

Deno.test("Session.hold() counts waiting bytes against the queue limit", () => {
  const { conn, session } = setup({ maxQueueBytes: 100 });
  assert.equal(session.hold(80), true);
  assert.equal(session.queuedBytes, 80);
  session.release(80);
  assert.equal(session.hold(80), true);
  assert.equal(session.hold(30), false);
  assert.equal(conn.closed?.code, 4000);
});

Deno.test("A stuck session does not slow another one down", () => {
  const stuck = setup({ maxQueueBytes: 1000 });
  const fine = setup({ maxQueueBytes: 1000 });
  stuck.conn.bufferedAmount = 1000;
  for (let i = 0; i < 100; i++) {
    stuck.session.send(`{"n":${i}}`);
    fine.session.send(`{"n":${i}}`);
  }
  assert.equal(stuck.session.closed, true);
  assert.equal(fine.conn.sent.length, 100);
  fine.session.close("normal");
});

Deno.test("Session handles frames one at a time, in order", async () => {
  const { handler, session } = setup();
  const order: string[] = [];
  handler.act = async (f) => {
    const cid = "cid" in f ? f.cid : "";
    order.push(`start ${cid}`);
    await new Promise((r) => setTimeout(r, cid === "a" ? 5 : 0));
    order.push(`end ${cid}`);
  };
  for (const cid of ["a", "b", "c"]) {
    session.receive(JSON.stringify({ cmd: 10, dstid: 2, media: 1, content: "x", cid }));
  }
  await session.settled();
  assert.deepStrictEqual(order, ["start a", "end a", "start b", "end b", "start c", "end c"]);
  session.close("normal");
});

Deno.test("Session starts a frame at once when none is in flight, else behind the last", async () => {
  const { handler, session } = setup();
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  handler.act = async (f) => {
    const cid = "cid" in f ? f.cid : "";
    order.push(`start ${cid}`);
    if (cid === "a") await gate;
    order.push(`end ${cid}`);
  };
  const chat = (cid: string) =>
    session.receive(JSON.stringify({ cmd: 10, dstid: 2, media: 1, content: "x", cid }));
  chat("a");
  // Synchronously: nothing was in flight, so "a" did not wait for a microtask.
  assert.deepStrictEqual(order, ["start a"]);
  chat("b");
  await Promise.resolve();
  assert.deepStrictEqual(order, ["start a"], "b waits while a is in flight");
  release();
  await session.settled();
  assert.deepStrictEqual(order, ["start a", "end a", "start b", "end b"]);
  chat("c");
  // Again none in flight: "c" (which never awaits) ran before receive() returned.
  assert.deepStrictEqual(order.slice(4), ["start c", "end c"]);
  await session.settled();
  session.close("normal");
});

Deno.test("Session refuses frames past maxPendingFrames with rate_limited and the cid", async () => {
  const { conn, handler, session } = setup({ maxPendingFrames: 2 });
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  handler.act = () => gate;
  for (const cid of ["a", "b", "c"]) {
    session.receive(JSON.stringify({ cmd: 10, dstid: 2, media: 1, content: "x", cid }));
  }
  assert.deepStrictEqual(conn.frames(), [{
    cmd: 21,
    code: "rate_limited",
    msg: "Too many frames in flight, retry",
    retryable: true,
    cid: "c",
  }]);
  release();
  await session.settled();
  assert.equal(handler.frames.length, 2);
  session.close("normal");
});

Deno.test("Session's error frame for a refused chat frame carries its cid: over the rate, or a bad field", async () => {
  const { conn, handler, session } = setup({ messageRate: { perSecond: 1, burst: 1 } });
  session.receive(JSON.stringify({ cmd: 10, dstid: 2, media: 1, content: "x", cid: "first" }));
  // Over the rate: refused before parsing, yet named.
  session.receive(JSON.stringify({ cmd: 10, dstid: 2, media: 1, content: "x", cid: "second" }));
  session.receive('{"cmd":0}');
  await session.settled();
  const frames = conn.frames();
  assert.deepStrictEqual(frames.map((f) => [f["code"], f["cid"]]), [
    ["rate_limited", "second"],
    ["rate_limited", undefined],
  ]);
  assert.deepStrictEqual(handler.frames.map((f) => "cid" in f ? f.cid : ""), ["first"]);
  session.close("normal");

  const other = setup();
  other.session.receive(JSON.stringify({ cmd: 10, dstid: 2, media: 55, content: "x", cid: "m1" }));
  other.session.receive(
    JSON.stringify({ cmd: 11, dstid: 2, media: 1, content: "a\u0000", cid: "m2" }),
  );
  await other.session.settled();
  assert.deepStrictEqual(other.conn.frames().map((f) => [f["code"], f["cid"]]), [
    ["bad_request", "m1"],
    ["bad_request", "m2"],
  ]);
  assert.equal(other.handler.frames.length, 0);
  other.session.close("normal");
});

Deno.test("Session turns a ClientError into an error frame and anything else into 1011", async () => {
  const { conn, handler, session } = setup();
  handler.act = () => Promise.reject(new ClientError("forbidden", "User 2 is not your friend"));
  session.receive(TEXT);
  await session.settled();
  assert.deepStrictEqual(conn.frames(), [{
    cmd: 21,
    code: "forbidden",
    msg: "User 2 is not your friend",
    retryable: false,
    cid: "c1",
  }]);
  handler.act = () => Promise.reject(new Error("disk on fire"));
  session.receive(TEXT);
  await session.settled();
  assert.equal(conn.closed?.code, CLOSE.internal.code);
});

Deno.test("Session closes with 4401 once its login is revoked", async () => {
  let valid = true;
  const { timers, conn, session } = setup({
    revalidateMs: 1000,
    idleTimeoutMs: 10_000,
    stillValid: () => Promise.resolve(valid),
  });
  timers.advance(1000);
  await Promise.resolve();
  assert.equal(session.closed, false);
  valid = false;
  timers.advance(1000);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(conn.closed?.code, CLOSE.unauthorized.code);
  assert.equal(timers.pending, 0);
});

Deno.test("Session spreads its first login recheck over the second half of revalidateMs", () => {
  const asked: string[] = [];
  const open = (name: string, random: number) =>
    setup({
      revalidateMs: 1000,
      random: () => random,
      stillValid: () => {
        asked.push(name);
        return Promise.resolve(true);
      },
    });
  const early = open("early", 0.99);
  const late = open("late", 0);
  early.timers.advance(600);
  late.timers.advance(600);
  assert.deepStrictEqual(asked, ["early"], "0.99 rechecks at ~505 ms, 0 not before 1000 ms");
  late.timers.advance(400);
  assert.deepStrictEqual(asked, ["early", "late"]);
  early.session.close("normal");
  late.session.close("normal");
});

Deno.test("Session.close() is idempotent and tells the handler once", () => {
  const { conn, handler, session, timers } = setup();
  session.close("goingAway");
  session.close("normal");
  session.closedByPeer(1000);
  assert.deepStrictEqual(handler.closes, [1001]);
  assert.equal(conn.closed?.code, 1001);
  assert.equal(timers.pending, 0);
  session.receive('{"cmd":0}');
  assert.equal(conn.sent.length, 0);
});

Deno.test("Session.roomFor waits for the socket to drain below half the queue, and closes a reader stalled for the whole wait with 4000", async () => {
  const { timers, conn, session } = setup({ maxQueueBytes: 1000, idleTimeoutMs: 0 });
  conn.bufferedAmount = 600;
  assert.equal(session.crowded(10), true);
  let done = false;
  const waiting = session.roomFor(10, 1000).then(() => done = true);
  timers.advance(100);
  await Promise.resolve();
  assert.equal(done, false, "still over half the limit");
  conn.bufferedAmount = 100;
  timers.advance(20);
  await waiting;
  assert.equal(session.closed, false, "drained: room, and open");
  // A reader that drains nothing for the whole wait is closed, not waited for row after row.
  conn.bufferedAmount = 600;
  const stalled = session.roomFor(10, 1000);
  for (let i = 0; i < 120 && !session.closed; i++) {
    timers.advance(10);
    await Promise.resolve();
    await Promise.resolve();
  }
  await stalled;
  assert.equal(session.closeCode, 4000);
});
