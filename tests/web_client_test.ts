/**
 * The web client's pure pieces (static/js), run under Deno: backoff, counters, URL checks, the
 * outbox and held uploads.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { backoffDelay, catchUpFrames } from "../static/js/connection.js";
import { ConvState, previewOf } from "../static/js/conv_state.js";
import { safeUrl, sameSite } from "../static/js/dom.js";
import { Outbox } from "../static/js/outbox.js";
import { Uploads, worthRetry } from "../static/js/uploads.js";

Deno.test("backoffDelay() doubles from 1 s to 30 s with half of it random", async (t) => {
  const table = [
    { name: "first retry", attempt: 0, min: 500, max: 1000 },
    { name: "third retry", attempt: 2, min: 2000, max: 4000 },
    { name: "capped", attempt: 9, min: 15000, max: 30000 },
  ];
  for (const { name, attempt, min, max } of table) {
    await t.step(name, () => {
      strictEqual(backoffDelay(attempt, () => 0), min);
      strictEqual(backoffDelay(attempt, () => 1), max);
    });
  }
});

Deno.test("safeUrl() keeps same-site paths and http(s) URLs only", async (t) => {
  const table = [
    { name: "upload path", input: "/mnt/ab.png", want: "/mnt/ab.png" },
    { name: "http URL", input: "https://lan.example/x", want: "https://lan.example/x" },
    { name: "protocol-relative", input: "//evil.example/x", want: undefined },
    { name: "backslash trick", input: "/\\evil.example", want: undefined },
    { name: "javascript:", input: "javascript:alert(1)", want: undefined },
    { name: "data:", input: "data:text/html,<b>", want: undefined },
    { name: "empty", input: "", want: undefined },
  ];
  for (const { name, input, want } of table) {
    await t.step(name, () => strictEqual(safeUrl(input), want));
  }
});

Deno.test("sameSite() tells this site's URLs (which the page's CSP loads) from others", () => {
  const base = "http://chat.lan:8080/chat/index.shtml";
  strictEqual(sameSite("/mnt/ab.png", base), true);
  strictEqual(sameSite("http://chat.lan:8080/mnt/ab.png", base), true);
  strictEqual(sameSite("https://chat.lan:8080/mnt/ab.png", base), false, "another scheme");
  strictEqual(sameSite("http://chat.lan:9090/x.png", base), false, "another port");
  strictEqual(sameSite("https://example.com/a.jpg", base), false);
});

/** A Storage-shaped map. */
function memoryStorage(): Storage {
  const map = new Map<string, string>();
  const storage = {
    getItem: (k: string) => map.get(k) ?? null,
    setItem: (k: string, v: string) => void map.set(k, v),
  };
  return storage as unknown as Storage;
}

Deno.test("ConvState counts unread messages once and survives a reload", () => {
  const storage = memoryStorage();
  const state = new ConvState(7, storage);
  state.seed("u:3:7", { seq: 4, ts: 1, media: 1, content: "old" });
  deepStrictEqual(state.lastSeqs(), { "u:3:7": 4 });
  const msg = (seq: number, userid: number) => ({
    conv: "u:3:7",
    seq,
    ts: seq,
    userid,
    media: 1,
    content: `m${seq}`,
  });
  ok(state.record(msg(5, 3), { mine: false, open: false }));
  ok(!state.record(msg(5, 3), { mine: false, open: false }), "a replay is not counted again");
  ok(state.record(msg(6, 7), { mine: true, open: false }));
  strictEqual(state.get("u:3:7")?.unread, 1);
  strictEqual(state.get("u:3:7")?.preview, "m6");
  const reloaded = new ConvState(7, storage);
  deepStrictEqual(reloaded.lastSeqs(), { "u:3:7": 6 });
  reloaded.markRead("u:3:7");
  strictEqual(reloaded.get("u:3:7")?.unread, 0);
  reloaded.acked("u:3:7", 8, { media: 4, ts: 9 });
  strictEqual(reloaded.get("u:3:7")?.last, 6, "an ack past a gap does not skip the gap");
  reloaded.acked("u:3:7", 7, { media: 4, ts: 9 });
  strictEqual(reloaded.get("u:3:7")?.last, 8, "the gap filled: 8, acked before, counts now");
  strictEqual(previewOf({ media: 3, amount: 4 }), '[Voice 4"]');
});

/** A stand-in Connection: records sent frames; `open()` fires the reconnect event. */
class FakeConn extends EventTarget {
  sent: { cid: string }[] = [];
  isOpen = true;
  send(frame: { cid: string }) {
    this.sent.push(frame);
    return this.isOpen;
  }
  open() {
    this.isOpen = true;
    this.dispatchEvent(new Event("open"));
  }
}

const frame = (cid: string) => ({ cmd: 10, dstid: 3, media: 1, content: cid, cid });

Deno.test("Outbox lists a conversation's unsent messages and resends timed-out ones on reconnect, not refused ones", async () => {
  const conn = new FakeConn();
  const outbox = new Outbox(conn, { ackTimeoutMs: 20 });
  const statuses: string[] = [];
  outbox.addEventListener("status", (e) => {
    const { cid, status } = (e as CustomEvent).detail;
    statuses.push(`${cid}:${status}`);
  });
  outbox.send(frame("a"), "u:3:7");
  outbox.send(frame("b"), "u:3:7");
  outbox.send(frame("c"), "g:1");
  strictEqual(outbox.size, 3);
  deepStrictEqual(outbox.unsent("u:3:7").map((e: { frame: { cid: string } }) => e.frame.cid), [
    "a",
    "b",
  ]);
  outbox.acked({ cid: "b", seq: 5, ts: 1 });
  outbox.refused({ cid: "c", retryable: false, msg: "Not a member" });
  // "a" gets no answer: a half-open socket lost it.
  await new Promise((r) => setTimeout(r, 60));
  deepStrictEqual(statuses, ["b:sent", "c:failed", "a:failed"]);
  deepStrictEqual(outbox.unsent("u:3:7"), [
    { frame: frame("a"), status: "failed", error: "No answer from the server" },
  ]);
  conn.sent = [];
  conn.open();
  deepStrictEqual(conn.sent.map((f) => f.cid), ["a"], "the refused one waits for Retry");
  strictEqual(statuses.at(-1), "a:pending");
  outbox.acked({ cid: "a", seq: 6, ts: 2 });
  deepStrictEqual(outbox.unsent("u:3:7"), []);
  strictEqual(outbox.size, 1);
});

Deno.test("Outbox shows a message refused for good (conflict, bad_request, too_large) as failed with no Retry; one refused as forbidden keeps its Retry", async (t) => {
  for (const code of ["conflict", "bad_request", "too_large"]) {
    await t.step(code, () => {
      const conn = new FakeConn();
      const outbox = new Outbox(conn, { ackTimeoutMs: 60_000 });
      const details: Record<string, unknown>[] = [];
      outbox.addEventListener("status", (e) => details.push((e as CustomEvent).detail));
      outbox.send(frame("x"), "u:3:7");
      const msg = `refused as ${code}`;
      outbox.refused({ cmd: 21, cid: "x", code, retryable: false, msg });
      deepStrictEqual(details.at(-1), { cid: "x", status: "failed", error: msg, final: true });
      deepStrictEqual(outbox.unsent("u:3:7"), [
        { frame: frame("x"), status: "failed", error: msg, final: true },
      ]);
      conn.sent = [];
      outbox.retry("x");
      conn.open();
      deepStrictEqual(conn.sent, [], "neither Retry nor a reconnect sends it again");
      strictEqual(details.length, 1, "no status change after the refusal");
      strictEqual(outbox.size, 0, "leaving the page loses nothing that could still go out");
    });
  }
  await t.step("forbidden: Retry sends it again (the two may be friends again by then)", () => {
    const conn = new FakeConn();
    const outbox = new Outbox(conn, { ackTimeoutMs: 60_000 });
    outbox.send(frame("y"), "u:3:7");
    outbox.refused({ cmd: 21, cid: "y", code: "forbidden", retryable: false, msg: "Not friends" });
    deepStrictEqual(outbox.unsent("u:3:7"), [
      { frame: frame("y"), status: "failed", error: "Not friends" },
    ]);
    strictEqual(outbox.size, 1);
    conn.sent = [];
    outbox.retry("y");
    deepStrictEqual(conn.sent.map((f) => f.cid), ["y"]);
  });
});

Deno.test("Outbox keeps at most 32 unacked frames on the socket and sends the rest in order as acks arrive, also after a reconnect", () => {
  const conn = new FakeConn();
  const outbox = new Outbox(conn, { ackTimeoutMs: 60_000 });
  const cids = Array.from({ length: 40 }, (_, i) => `m${i}`);
  const range = (from: number, to: number) => cids.slice(from, to);
  // A long offline spell: 40 messages, alternating between two chats, pile up.
  conn.isOpen = false;
  cids.forEach((cid, i) => outbox.send(frame(cid), i % 2 === 0 ? "u:3:7" : "g:1"));
  strictEqual(outbox.size, 40);
  conn.sent = [];
  conn.open();
  deepStrictEqual(conn.sent.map((f) => f.cid), range(0, 32), "the oldest 32, in order");
  // Each ack (or refusal) frees one place for the next message queued.
  conn.sent = [];
  outbox.acked({ cid: "m0", seq: 1, ts: 1 });
  outbox.acked({ cid: "m5", seq: 2, ts: 1 });
  outbox.acked({ cid: "m6", seq: 3, ts: 1 });
  outbox.refused({ cid: "m1", retryable: false, msg: "Not a member" });
  deepStrictEqual(conn.sent.map((f) => f.cid), range(32, 36));
  // A reconnect resends the unacked ones, again 32 at most, oldest first; the refused one waits.
  conn.sent = [];
  conn.open();
  const resent = [...range(2, 5), ...range(7, 36)];
  deepStrictEqual(conn.sent.map((f) => f.cid), resent);
  conn.sent = [];
  for (const cid of resent) outbox.acked({ cid, seq: 9, ts: 1 });
  deepStrictEqual(conn.sent.map((f) => f.cid), range(36, 40), "the last four follow the acks");
  for (const cid of range(36, 40)) outbox.acked({ cid, seq: 9, ts: 1 });
  strictEqual(outbox.size, 1, "only the refused one is left, waiting for Retry");
  deepStrictEqual(outbox.unsent("g:1").map((e: { status: string }) => e.status), ["failed"]);
});

Deno.test("Uploads keeps a file whose upload failed, and Retry uploads it again and sends it to the chat it was picked in", async () => {
  let fail = true;
  const sent: unknown[] = [];
  const uploads = new Uploads({
    upload: (_file: File, name: string) =>
      fail ? Promise.reject(new Error("Disk full")) : Promise.resolve(`/mnt/${name}`),
    send: (fields: unknown, target: unknown) => void sent.push({ fields, target }),
    newCid: () => "held-1",
  });
  const events: string[] = [];
  let held: Record<string, unknown> | undefined;
  uploads.addEventListener("held", (e) => {
    held = (e as CustomEvent).detail;
    events.push("held");
  });
  for (const type of ["status", "done"]) {
    uploads.addEventListener(type, (e) => {
      const { status } = (e as CustomEvent).detail;
      events.push(status ? `${type}:${status}` : type);
    });
  }
  const bob = { conv: "u:3:7", cmd: 10, dstid: 3 };
  const settled = () => new Promise((resolve) => setTimeout(resolve, 0));

  const voice = new File(["clip"], "voice.webm", { type: "audio/webm" });
  await uploads.send(voice, { name: "voice.webm", fields: { media: 3, amount: 2 }, target: bob });
  deepStrictEqual(sent, []);
  strictEqual(uploads.size, 1);
  const { preview, ...rest } = held!;
  deepStrictEqual(rest, {
    cid: "held-1",
    conv: "u:3:7",
    frame: { cmd: 10, dstid: 3, media: 3, amount: 2, url: "", cid: "held-1" },
    status: "failed",
    error: "Disk full",
  });
  ok(String(preview).startsWith("blob:"), "a local copy to show in its place");
  deepStrictEqual(uploads.unsent("g:1"), []);
  strictEqual(uploads.unsent("u:3:7").length, 1);

  // Retry fails again: it stays held.
  strictEqual(uploads.retry("held-1"), true);
  await settled();
  strictEqual(uploads.size, 1);
  // Retry goes through: the same recording is sent to Bob.
  fail = false;
  uploads.retry("held-1");
  await settled();
  deepStrictEqual(sent, [{ fields: { media: 3, amount: 2, url: "/mnt/voice.webm" }, target: bob }]);
  deepStrictEqual(events, [
    "held",
    "status:pending",
    "status:failed",
    "status:pending",
    "done",
  ]);
  strictEqual(uploads.size, 0);
  strictEqual(uploads.retry("held-1"), false, "not ours any more");
  strictEqual(uploads.retry("some-text-cid"), false);
});

Deno.test("Uploads drops a file the server refused for good (too large, empty), on the first try or a retry", async () => {
  const refusal = (status: number) => Object.assign(new Error(`refused ${status}`), { status });
  let failure: Error = refusal(413);
  const uploads = new Uploads({
    upload: () => Promise.reject(failure),
    send: () => {
      throw new Error("nothing is sent");
    },
    newCid: () => "held-2",
  });
  const events: unknown[] = [];
  for (const type of ["held", "dropped"]) {
    uploads.addEventListener(type, (e) => {
      const { cid, media, error } = (e as CustomEvent).detail;
      events.push([type, cid, media, error]);
    });
  }
  const bob = { conv: "u:3:7", cmd: 10, dstid: 3 };
  const video = new File(["big"], "big.mp4", { type: "video/mp4" });
  await uploads.send(video, { name: undefined, fields: { media: 5 }, target: bob });
  deepStrictEqual(events, [["dropped", undefined, 5, "refused 413"]]);
  strictEqual(uploads.size, 0, "not kept: a retry cannot pass");

  // A server error is held; its retry meets a refusal for good: dropped then.
  failure = refusal(503);
  await uploads.send(video, { name: undefined, fields: { media: 5 }, target: bob });
  strictEqual(uploads.size, 1);
  failure = refusal(400);
  uploads.retry("held-2");
  await new Promise((resolve) => setTimeout(resolve, 0));
  strictEqual(uploads.size, 0);
  deepStrictEqual(events.slice(1), [
    ["held", "held-2", undefined, "refused 503"],
    ["dropped", "held-2", 5, "refused 400"],
  ]);
  for (
    const [status, retry] of [[500, true], [408, true], [429, true], [413, false], [422, false]]
  ) {
    strictEqual(worthRetry(refusal(status as number)), retry, String(status));
  }
  strictEqual(worthRetry(new TypeError("Failed to fetch")), true, "no answer at all");
});

Deno.test("Outbox waits longer after each retryable refusal in a row, and at least the server's retryAfter", async () => {
  const conn = new FakeConn();
  conn.open();
  const outbox = new Outbox(conn, { retryDelayMs: 20, ackTimeoutMs: 60_000 });
  const sentAt: number[] = [];
  const t0 = performance.now();
  const origin = conn.send.bind(conn);
  conn.send = (f: { cid: string }) => {
    sentAt.push(performance.now() - t0);
    return origin(f);
  };
  const until = async (n: number) => {
    for (let i = 0; i < 400 && sentAt.length < n; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  outbox.send(frame("r"), "u:1:3");
  // Refused three times in a row: 20, then 40, then 80 ms (each up to a quarter more).
  for (let n = 2; n <= 4; n++) {
    outbox.refused({ cid: "r", retryable: true, code: "rate_limited", msg: "slow down" });
    await until(n);
  }
  const gaps = sentAt.slice(1).map((t, i) => t - sentAt[i]!);
  strictEqual(gaps.length, 3);
  gaps.forEach((gap, i) => {
    const base = 20 * 2 ** i;
    ok(gap >= base - 2 && gap < base * 1.25 + 40, `gap ${i}: ${gap.toFixed(1)} ms`);
  });
  // The server says 1 s (as for a full disk: 30): not sooner.
  const before = sentAt.length;
  const at = performance.now();
  outbox.refused({ cid: "r", retryable: true, code: "unavailable", msg: "disk", retryAfter: 1 });
  await new Promise((r) => setTimeout(r, 600));
  strictEqual(sentAt.length, before, "not before retryAfter");
  await until(before + 1);
  ok(performance.now() - at >= 1000, "resent after retryAfter");
  outbox.acked({ cid: "r", seq: 1, ts: 1 });
  strictEqual(outbox.size, 0);
});

Deno.test("ConvState's catch-up leaves out conversations with nothing yet, so a long friend list adds no catch-up frames", () => {
  const state = new ConvState(7, memoryStorage());
  for (let friend = 100; friend < 1600; friend++) state.seed(`u:7:${friend}`, undefined);
  state.seed("u:3:7", { seq: 4, ts: 1, media: 1, content: "old" });
  // With all:true an unlisted conversation is replayed from seq 1: the same as naming it at 0.
  deepStrictEqual(state.lastSeqs(), { "u:3:7": 4 });
});

Deno.test("ConvState counts a message that comes after newer ones, once, and its catch-up asks from the gap", () => {
  const storage = memoryStorage();
  const state = new ConvState(7, storage);
  state.seed("u:3:7", { seq: 40, ts: 40, media: 1, content: "m40" });
  const msg = (seq: number) => ({
    conv: "u:3:7",
    seq,
    ts: seq,
    userid: 3,
    media: 1,
    content: `m${seq}`,
  });
  // A live message first (the catch-up came late), then the catch-up's 41 - 49.
  ok(state.record(msg(50), { mine: false, open: false }));
  deepStrictEqual(state.lastSeqs(), { "u:3:7": 40 }, "a reconnect now asks for 41 on");
  // The page is reloaded before the older ones arrive: the gap is remembered.
  const reloaded = new ConvState(7, storage);
  deepStrictEqual(reloaded.lastSeqs(), { "u:3:7": 40 });
  for (let seq = 41; seq <= 49; seq++) ok(reloaded.record(msg(seq), { mine: false, open: false }));
  ok(!reloaded.record(msg(50), { mine: false, open: false }), "50 again is a replay");
  strictEqual(reloaded.get("u:3:7")?.unread, 10, "each of 41 - 50 counted once");
  strictEqual(reloaded.get("u:3:7")?.preview, "m50", "the preview stays the newest");
  deepStrictEqual(reloaded.lastSeqs(), { "u:3:7": 50 });
  strictEqual(reloaded.get("u:3:7")?.above, undefined);
  // A conversation first seen live at seq 500 (a group joined late): its history is no gap.
  ok(reloaded.record({ ...msg(500), conv: "g:9" }, { mine: false, open: false }));
  strictEqual(reloaded.get("g:9")?.last, 500);
  strictEqual(reloaded.get("g:9")?.unread, 1);
});

Deno.test("catchUpFrames() splits a catch-up into frames of at most 1,000 conversations, all:true on the last", async (t) => {
  const seqs = (from: number, n: number) =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`u:1:${from + i}`, i + 1]));
  await t.step("nothing to name: the one frame of old", () => {
    deepStrictEqual(catchUpFrames({}), [{ cmd: 30, seqs: {}, all: true }]);
  });
  await t.step("1,000: still one frame", () => {
    deepStrictEqual(catchUpFrames(seqs(2, 1000)), [{ cmd: 30, seqs: seqs(2, 1000), all: true }]);
  });
  await t.step("2,500: three parts, more:true on all but the last", () => {
    const all = seqs(2, 2500);
    const frames = catchUpFrames(all);
    deepStrictEqual(frames.map((f) => Object.keys(f.seqs).length), [1000, 1000, 500]);
    deepStrictEqual(frames.map((f) => [f.more, f.all]), [
      [true, undefined],
      [true, undefined],
      [undefined, true],
    ]);
    deepStrictEqual(Object.assign({}, ...frames.map((f) => f.seqs)), all, "every entry once");
    ok(frames.every((f) => JSON.stringify(f).length < 64 * 1024), "each under the frame limit");
  });
});
