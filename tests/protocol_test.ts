import assert from "node:assert/strict";
import {
  CMD_ACK,
  CMD_CATCHUP,
  CMD_HEART,
  CMD_HISTORY,
  CMD_ROOM_MSG,
  CMD_SINGLE_MSG,
  encode,
  errorFrame,
  FrameError,
  MAX_FRAME_BYTES,
  messageFrame,
  parseConv,
  parseFrame,
  refusedFrameCid,
} from "../lib/protocol.ts";
import { BusyError, ClientError } from "../lib/errors.ts";

const TEXT = { cmd: 10, dstid: 2, media: 1, content: "hi" };

Deno.test("parseFrame() accepts the seed's frames and the new ones", async (t) => {
  const cases: { name: string; input: unknown; want: unknown }[] = [
    { name: "heartbeat", input: { cmd: 0 }, want: { cmd: CMD_HEART } },
    {
      name: "1:1 text with the seed's spoofable id and userid ignored",
      input: { id: 99, userid: 7, ...TEXT },
      want: {
        cmd: CMD_SINGLE_MSG,
        dstid: 2,
        media: 1,
        content: "hi",
        pic: "",
        url: "",
        memo: "",
        amount: 0,
        cid: "",
      },
    },
    {
      name: "group voice with digit strings as old clients send",
      input: {
        cmd: "11",
        dstid: "5",
        media: 3,
        url: "/mnt/a.mp3",
        amount: "4",
        cid: "c-1",
        userid: "3",
      },
      want: {
        cmd: CMD_ROOM_MSG,
        dstid: 5,
        media: 3,
        content: "",
        pic: "",
        url: "/mnt/a.mp3",
        memo: "",
        amount: 4,
        cid: "c-1",
      },
    },
    {
      name: "custom media 100",
      input: { ...TEXT, media: 100 },
      want: { ...parseFrame(JSON.stringify(TEXT)), media: 100 },
    },
    {
      name: "catch-up",
      input: { cmd: 30, seqs: { "u:1:2": 4, "g:9": 0 }, all: true },
      want: {
        cmd: CMD_CATCHUP,
        seqs: new Map([["u:1:2", 4], ["g:9", 0]]),
        all: true,
        more: false,
      },
    },
    {
      name: "catch-up without seqs",
      input: { cmd: 30 },
      want: { cmd: CMD_CATCHUP, seqs: new Map(), all: false, more: false },
    },
    {
      name: "catch-up part with more to come",
      input: { cmd: 30, seqs: { "g:9": 3 }, more: true },
      want: { cmd: CMD_CATCHUP, seqs: new Map([["g:9", 3]]), all: false, more: true },
    },
    {
      name: "catch-up part of 1,000 conversations",
      input: {
        cmd: 30,
        seqs: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`u:1:${i + 2}`, i])),
        more: true,
      },
      want: {
        cmd: CMD_CATCHUP,
        seqs: new Map(Array.from({ length: 1000 }, (_, i) => [`u:1:${i + 2}`, i])),
        all: false,
        more: true,
      },
    },
    {
      name: "history with defaults",
      input: { cmd: 32, conv: "g:3", before: 10 },
      want: { cmd: CMD_HISTORY, conv: "g:3", limit: 50, rid: "", before: 10 },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.deepStrictEqual(parseFrame(JSON.stringify(c.input)), c.want);
    });
  }
});

Deno.test("parseFrame() reads binary frames as UTF-8", () => {
  const bytes = new TextEncoder().encode(JSON.stringify({ ...TEXT, content: "你好" }));
  const frame = parseFrame(bytes);
  assert.equal("content" in frame && frame.content, "你好");
  assert.deepStrictEqual(parseFrame(bytes.buffer), frame);
});

Deno.test("parseFrame() refuses junk with an error that names the problem", async (t) => {
  const cases: {
    name: string;
    input: string | Uint8Array;
    want: RegExp;
    field?: string;
    code?: string;
  }[] = [
    { name: "not JSON", input: "hello,world!", want: /not valid JSON/ },
    { name: "a JSON array", input: "[1,2]", want: /JSON object/ },
    { name: "JSON null", input: "null", want: /JSON object/ },
    { name: "no cmd", input: "{}", want: /"cmd" is required/, field: "cmd" },
    { name: "unknown cmd", input: '{"cmd":12}', want: /Unknown cmd 12/, field: "cmd" },
    { name: "negative cmd", input: '{"cmd":-1}', want: /"cmd" must be/, field: "cmd" },
    {
      name: "fractional dstid",
      input: JSON.stringify({ ...TEXT, dstid: 1.5 }),
      want: /"dstid" must be an integer/,
      field: "dstid",
    },
    {
      name: "missing dstid",
      input: JSON.stringify({ cmd: 10, media: 1, content: "x" }),
      want: /"dstid" is required/,
      field: "dstid",
    },
    {
      name: "media 0",
      input: JSON.stringify({ ...TEXT, media: 0 }),
      want: /1-9 or 100/,
      field: "media",
    },
    {
      name: "media 10",
      input: JSON.stringify({ ...TEXT, media: 10 }),
      want: /1-9 or 100, got 10/,
      field: "media",
    },
    {
      name: "content not a string",
      input: JSON.stringify({ ...TEXT, content: 5 }),
      want: /"content" must be a string/,
      field: "content",
    },
    {
      name: "empty message",
      input: JSON.stringify({ ...TEXT, content: "" }),
      want: /no content, url or pic/,
    },
    {
      name: "url too long",
      input: JSON.stringify({ ...TEXT, url: "x".repeat(2049) }),
      want: /"url" exceeds 2048/,
      field: "url",
    },
    {
      name: "content too long",
      input: JSON.stringify({ ...TEXT, content: "x".repeat(16_385) }),
      want: /"content" exceeds/,
      field: "content",
    },
    {
      name: "cid with spaces",
      input: JSON.stringify({ ...TEXT, cid: "a b" }),
      want: /"cid" may hold only/,
      field: "cid",
    },
    {
      name: "NUL in content (Postgres cannot store it)",
      input: JSON.stringify({ ...TEXT, content: "a\u0000b" }),
      want: /"content" may not contain NUL/,
      field: "content",
    },
    {
      name: "an unpaired surrogate in memo (no UTF-8 for it)",
      input: JSON.stringify({ ...TEXT, memo: "x\ud800y" }),
      want: /"memo" holds an unpaired UTF-16 surrogate/,
      field: "memo",
    },
    {
      name: "a reversed surrogate pair in pic",
      input: JSON.stringify({ ...TEXT, pic: "\udc00\ud800" }),
      want: /"pic" holds an unpaired/,
      field: "pic",
    },
    {
      name: "negative amount",
      input: JSON.stringify({ ...TEXT, amount: -1 }),
      want: /"amount" must be/,
      field: "amount",
    },
    {
      name: "catch-up with a bad conversation key",
      input: JSON.stringify({ cmd: 30, seqs: { "u:2:1": 3 } }),
      want: /is not u:<low>:<high>/,
      field: "conv",
    },
    {
      name: "catch-up naming over 1,000 conversations in one frame",
      input: JSON.stringify({
        cmd: 30,
        seqs: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`u:1:${i + 2}`, 1])),
        more: true,
      }),
      want: /more than 1000 conversations; send the rest in another part/,
      field: "seqs",
    },
    {
      name: "catch-up with more that is not a boolean",
      input: JSON.stringify({ cmd: 30, seqs: {}, more: "yes" }),
      want: /"more" must be true or false/,
      field: "more",
    },
    {
      name: "catch-up with a negative seq",
      input: JSON.stringify({ cmd: 30, seqs: { "g:1": -3 } }),
      want: /integer of 0 or more/,
      field: "seqs",
    },
    {
      name: "history with before and after",
      input: JSON.stringify({ cmd: 32, conv: "g:1", before: 3, after: 1 }),
      want: /not both/,
    },
    {
      name: "history page too large",
      input: JSON.stringify({ cmd: 32, conv: "g:1", limit: 201 }),
      want: /"limit" must be an integer from 1 to 200/,
      field: "limit",
    },
    {
      name: "over 64 KiB",
      input: JSON.stringify({ ...TEXT, memo: "x".repeat(MAX_FRAME_BYTES) }),
      want: /exceeds 65536 bytes/,
      code: "too_large",
    },
    {
      name: "over 64 KiB in UTF-8 though under it in characters",
      input: JSON.stringify({ ...TEXT, content: "你".repeat(22_000) }),
      want: /exceeds 65536 bytes/,
      code: "too_large",
    },
    {
      name: "binary that is not UTF-8",
      input: new Uint8Array([0x7b, 0xff, 0x7d]),
      want: /not valid UTF-8/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(() => parseFrame(c.input), (e: unknown) => {
        assert.ok(e instanceof FrameError);
        assert.ok(e instanceof ClientError);
        assert.match(e.message, c.want);
        assert.equal(e.code, c.code ?? "bad_request");
        if (c.field !== undefined) assert.equal(e.field, c.field);
        // Sentence case, no final period.
        assert.match(e.message, /^[A-Z"].*[^.]$/);
        return true;
      });
    });
  }
});

Deno.test("parseFrame() accepts text with paired surrogates and other control characters", () => {
  const frame = parseFrame(JSON.stringify({ ...TEXT, content: "\u{1F600} tab\there\u0001" }));
  assert.equal("content" in frame ? frame.content : "", "\u{1F600} tab\there\u0001");
});

Deno.test("a refused chat frame's error names its cid when it had a valid one", async (t) => {
  const cases: { name: string; frame: Record<string, unknown>; cid: string | undefined }[] = [
    { name: "bad media", frame: { ...TEXT, media: 55, cid: "m1" }, cid: "m1" },
    {
      name: "group frame, NUL",
      frame: { ...TEXT, cmd: 11, content: "\u0000", cid: "g.2" },
      cid: "g.2",
    },
    {
      name: "cmd as a digit string",
      frame: { ...TEXT, cmd: "10", dstid: 0, cid: "c-3" },
      cid: "c-3",
    },
    { name: "the cid itself is bad", frame: { ...TEXT, cid: "a b" }, cid: undefined },
    { name: "no cid", frame: { ...TEXT, media: 0 }, cid: undefined },
    { name: "not a chat frame", frame: { cmd: 32, conv: "nope", cid: "h1" }, cid: undefined },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(() => parseFrame(JSON.stringify(c.frame)), (e: unknown) => {
        assert.ok(e instanceof FrameError);
        assert.equal(e.cid, c.cid);
        const frame = errorFrame(e, e.cid);
        assert.equal(frame.cid, c.cid);
        return true;
      });
    });
  }
});

Deno.test("refusedFrameCid() reads the cid of a chat frame refused before parsing, never throws", () => {
  assert.equal(refusedFrameCid(JSON.stringify({ ...TEXT, cid: "r1" })), "r1");
  assert.equal(
    refusedFrameCid(new TextEncoder().encode(JSON.stringify({ ...TEXT, cid: "r2" }))),
    "r2",
  );
  assert.equal(refusedFrameCid(JSON.stringify({ cmd: 0, cid: "r3" })), undefined);
  assert.equal(refusedFrameCid(JSON.stringify({ ...TEXT, cid: "a b" })), undefined);
  assert.equal(refusedFrameCid("not json"), undefined);
  assert.equal(refusedFrameCid(new Uint8Array([0xff])), undefined);
  assert.equal(refusedFrameCid("x".repeat(MAX_FRAME_BYTES + 1)), undefined);
});

Deno.test("parseConv() reads 1:1 and group keys", () => {
  assert.deepStrictEqual(parseConv("u:3:12"), { kind: "user", a: 3, b: 12 });
  assert.deepStrictEqual(parseConv("g:7"), { kind: "group", groupId: 7 });
  for (const bad of ["u:3:3", "u:0:1", "g:0", "g:x", "x", "u:1:2:3", "g:01"]) {
    assert.throws(() => parseConv(bad), FrameError, bad);
  }
});

Deno.test("encode() writes message, ack and error frames", () => {
  const stored = {
    id: 5,
    userid: 1,
    cmd: 10,
    dstid: 2,
    media: 1,
    content: "hi",
    pic: "",
    url: "",
    memo: "",
    amount: 0,
    cid: "c1",
    conv: "u:1:2",
    seq: 3,
    ts: 1000,
  };
  assert.deepStrictEqual(JSON.parse(encode(messageFrame(stored))), stored);
  assert.deepStrictEqual(
    JSON.parse(encode({
      cmd: CMD_ACK,
      cid: "c1",
      seq: 3,
      id: 5,
      conv: "u:1:2",
      ts: 1000,
      dup: false,
    })),
    { cmd: 20, cid: "c1", seq: 3, id: 5, conv: "u:1:2", ts: 1000, dup: false },
  );
  const err = errorFrame(new ClientError("forbidden", "User 2 is not your friend"), "c1");
  assert.deepStrictEqual(JSON.parse(encode(err)), {
    cmd: 21,
    code: "forbidden",
    msg: "User 2 is not your friend",
    retryable: false,
    cid: "c1",
  });
  assert.equal("cid" in errorFrame(new ClientError("bad_request", "X")), false);
  assert.equal("retryAfter" in err, false, "only when the server knows how long");
  // A refusal that names its wait (a full disk, a busy server) says it in the frame.
  assert.deepStrictEqual(
    JSON.parse(encode(errorFrame(new BusyError("The server's disk is full", 30), "c2"))),
    {
      cmd: 21,
      code: "unavailable",
      msg: "The server's disk is full",
      retryable: true,
      retryAfter: 30,
      cid: "c2",
    },
  );
});
