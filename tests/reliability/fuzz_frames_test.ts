/**
 * Fuzzing the websocket frame format: 100,000 generated bad client frames go
 * through the real `parseFrame`, each refused with a `FrameError`; then a
 * sample of several thousand goes through real sessions over real sockets:
 * each gets an error frame, a connection stays open (or closes with the
 * documented abuse code 1008) and the server keeps serving.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { CLOSE } from "../../lib/close_codes.ts";
import { FrameError, MAX_FRAME_BYTES, parseFrame } from "../../lib/protocol.ts";
import { startChatServer } from "../_chat_helpers.ts";
import { assertServingNothingStored, deepJson, NASTY_CHARS, Rng, SEED } from "./_fuzz.ts";

const COUNT = 100_000;
const SAMPLE_CONNECTIONS = 5;
const SAMPLE_PER_CONNECTION = 1_000;

type Frame = string | Uint8Array<ArrayBuffer>;

/** A valid frame of each kind, to break one rule of. */
function validBase(rng: Rng): Record<string, unknown> {
  switch (rng.int(3)) {
    case 0:
      return { cmd: rng.pick([10, 11]), dstid: 2, media: 1, content: "hi", cid: "c1" };
    case 1:
      return { cmd: 30, seqs: { "u:1:2": 3, "g:4": 0 }, all: false };
    default:
      return { cmd: 32, conv: "u:1:2", limit: 10, rid: "r1" };
  }
}

/** Values that are never a valid integer field (strings of 1-15 digits would be). */
const NOT_INT = [null, true, "x", "-1", "1.5", "１", "1e3", 1.5, -1, 1e300, [], 0.5, {}, [1]];
/** Values that are never a valid string field. */
const NOT_STRING = [1, 0, true, false, [], {}, ["a"], { a: "b" }];
/** Conversation keys that are never valid. */
const BAD_CONVS = [
  "",
  "u:2:1",
  "u:1:1",
  "u:0:1",
  "g:0",
  "g:-1",
  "g:01",
  "x:1",
  "u:1",
  "g:1 ",
  "G:1",
];

/** One frame that breaks exactly one rule (a few break the frame as a whole). */
export function badFrame(rng: Rng): Frame {
  const enc = new TextEncoder();
  const f = validBase(rng);
  const cmd = f["cmd"];
  switch (rng.int(14)) {
    case 0: // not JSON
      return rng.pick(["", "{", "hello,world!", "{'cmd':0}", "{cmd:0}", "\u0000", rng.text(20)]) +
        (rng.next() < 0.5 ? "" : "}}");
    case 1: // JSON, but not an object
      return rng.pick(["null", "1", '"s"', "[]", "[{}]", "true", `[${JSON.stringify(f)}]`]);
    case 2: // cmd missing, of a wrong type, or unknown
      if (rng.next() < 0.3) delete f["cmd"];
      else f["cmd"] = rng.pick([...NOT_INT, 1, 9, 12, 20, 21, 31, 33, 999_999, 2e6]);
      if (f["cmd"] === null) delete f["cmd"];
      return JSON.stringify(f);
    case 3: // invalid UTF-8 (binary frame)
      return new Uint8Array([0x7b, 0x22, 0x63, 0x6d, 0x64, 0x22, 0x3a, 0xc0, 0xaf, 0x7d]);
    case 4: { // over the size limit, as text or binary
      const pad = "x".repeat(MAX_FRAME_BYTES + rng.int(2000));
      const text = JSON.stringify({ cmd: 0, pad });
      return rng.next() < 0.5 ? text : enc.encode(text);
    }
    case 5: // deep nesting inside a field
      f[rng.pick(["content", "seqs", "conv", "dstid"])] = JSON.parse(
        deepJson(1 + rng.int(200), rng.next() < 0.5),
      );
      if (cmd === 30) f["seqs"] = JSON.parse(deepJson(2 + rng.int(200), false));
      if (cmd === 32) f["conv"] = JSON.parse(deepJson(1 + rng.int(200), true));
      if (cmd === 10 || cmd === 11) f["dstid"] = JSON.parse(deepJson(1 + rng.int(200), false));
      return JSON.stringify(f);
    case 6: // a bad integer field
      if (cmd === 30) f["seqs"] = { "u:1:2": rng.pick(NOT_INT.filter((v) => v !== null)) };
      else if (cmd === 32) f["limit"] = rng.pick([...NOT_INT.slice(1), 0, 201, 1e9]);
      else f[rng.pick(["dstid", "media", "amount"])] = rng.pick(NOT_INT.slice(1));
      return JSON.stringify(f);
    case 7: // a bad string field
      if (cmd === 32) f["conv"] = rng.pick(NOT_STRING);
      else if (cmd === 30) f["all"] = rng.pick([1, "true", [], {}]);
      else f[rng.pick(["content", "pic", "url", "memo", "cid"])] = rng.pick(NOT_STRING);
      return JSON.stringify(f);
    case 8: // a field over its limit
      if (cmd === 32) f["rid"] = "r".repeat(65 + rng.int(100));
      else if (cmd === 30) {
        f["seqs"] = Object.fromEntries(
          Array.from({ length: 1001 + rng.int(50) }, (_, i) => [`g:${i + 1}`, 1]),
        );
      } else {
        const [field, max] = rng.pick(
          [["content", 16384], ["pic", 2048], ["url", 2048], [
            "memo",
            1024,
          ], ["cid", 64]] as const,
        );
        f[field] = (field === "cid" ? "c" : "中").repeat(max + 1 + rng.int(20));
      }
      return JSON.stringify(f);
    case 9: // a conversation key that is not one
      // A suffix starts with a character no key has, so it never completes a bad key into a
      // good one ("u:1" + ":95" did: seed 773278691).
      if (cmd === 32) f["conv"] = rng.pick(BAD_CONVS) + (rng.next() < 0.3 ? `#${rng.text(2)}` : "");
      else f["cmd"] = 30, f["seqs"] = { [rng.pick(BAD_CONVS)]: 1 };
      return JSON.stringify(f);
    case 10: // ids with characters outside the allowed set
      if (cmd === 32) f["rid"] = `r${rng.pick(NASTY_CHARS.filter((c) => !/[\w.:-]/.test(c)))}`;
      else {
        f["cmd"] = rng.pick([10, 11]);
        f["dstid"] = 2, f["media"] = 1, f["content"] = "x";
        f["cid"] = `c${rng.pick(NASTY_CHARS.filter((c) => !/[\w.:-]/.test(c)))}`;
      }
      return JSON.stringify(f);
    case 11: // a chat message with nothing in it or an unknown media code
      return JSON.stringify(
        rng.next() < 0.5
          ? { cmd: 10, dstid: 2, media: 1, content: "", pic: null, url: "" }
          : { cmd: 11, dstid: 3, media: rng.pick([0, 10, 11, 99, 101, 1000]), content: "x" },
      );
    case 12: // history with both before and after
      return JSON.stringify({ cmd: 32, conv: "g:1", before: 5, after: 1 });
    default: { // a valid frame cut short
      const text = JSON.stringify(f);
      return text.slice(0, rng.int(text.length));
    }
  }
}

Deno.test(`Frame fuzz: ${COUNT} bad frames are each refused by parseFrame with a FrameError (seed ${SEED})`, () => {
  const rng = new Rng(SEED);
  const failures: string[] = [];
  const codes = new Map<string, number>();
  for (let i = 0; i < COUNT; i++) {
    const frame = badFrame(rng);
    try {
      const parsed = parseFrame(frame);
      failures.push(`#${i} accepted: ${String(frame).slice(0, 120)} → ${JSON.stringify(parsed)}`);
    } catch (error) {
      if (!(error instanceof FrameError) || error.message === "") {
        failures.push(`#${i} threw ${String(error)} for ${String(frame).slice(0, 120)}`);
      } else {
        codes.set(error.code, (codes.get(error.code) ?? 0) + 1);
      }
    }
  }
  deepStrictEqual(failures.slice(0, 5), [], `seed ${SEED}: ${failures.length} failures`);
  strictEqual((codes.get("bad_request") ?? 0) + (codes.get("too_large") ?? 0), COUNT);
  ok((codes.get("too_large") ?? 0) > 0, "the sample includes oversized frames");
});

Deno.test(
  `Frame fuzz over real sockets: ${
    SAMPLE_CONNECTIONS * SAMPLE_PER_CONNECTION
  } bad frames each get an error, sessions survive or close with 1008 (seed ${SEED})`,
  async () => {
    await using server = await startChatServer();
    const rng = new Rng(SEED ^ 0x5eed);
    const outcomes = await Promise.all(
      Array.from({ length: SAMPLE_CONNECTIONS }, async (_, n) => {
        const user = await server.user(`fuzz${n}`);
        const socket = await server.connect(user);
        const errorsBefore = socket.frames.filter((f) => f["cmd"] === 21).length;
        let sent = 0;
        let hearts = 0;
        for (let i = 0; i < SAMPLE_PER_CONNECTION; i++) {
          socket.ws.send(badFrame(rng));
          sent++;
          // A heartbeat now and then resets the bad-frame streak, as a live client's would.
          if (i % 10 === 9) socket.send({ cmd: 0 }), hearts++;
          if (i % 100 === 99) {
            await socket.waitFor((f) => f["cmd"] === 0, hearts, 15_000);
          }
        }
        await socket.waitFor((f) => f["cmd"] === 21, errorsBefore + sent, 15_000);
        const errors = socket.frames.filter((f) => f["cmd"] === 21);
        const refusedOk = errors.every((f) =>
          typeof f["msg"] === "string" && f["msg"] !== "" && typeof f["code"] === "string"
        );
        // Twenty bad frames in a row: the documented abuse close, read even by a client
        // that goes on sending past the limit (the server reads on until its close).
        socket.send({ cmd: 0 });
        await socket.waitFor((f) => f["cmd"] === 0, hearts + 1, 15_000);
        for (let i = 0; i < 30; i++) socket.ws.send("not json");
        const code = await socket.closed;
        return { errors: errors.length - errorsBefore, refusedOk, code };
      }),
    );
    for (const o of outcomes) {
      deepStrictEqual(o, {
        errors: SAMPLE_PER_CONNECTION,
        refusedOk: true,
        code: CLOSE.abuse.code,
      }, `seed ${SEED}`);
    }
    // The server still serves, and nothing of the fuzz was stored.
    await assertServingNothingStored(server);
  },
);
