import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { concatBytes } from "../lib/bytes.ts";
import {
  encodeClose,
  encodeText,
  FrameReader,
  OP,
  TextFrames,
  type WsMessage,
  WsProtocolError,
} from "../lib/ws/frames.ts";
import { clientFrame, closePayload } from "./_ws_client_frames.ts";

const MAX = 64 * 1024;

const concat = (...parts: Uint8Array[]) => concatBytes(parts);

function refusedWith(code: number, ...frames: Uint8Array[]): void {
  const reader = new FrameReader(MAX);
  throws(
    () => reader.push(concat(...frames)),
    (e: unknown) => e instanceof WsProtocolError && e.code === code,
  );
}

Deno.test("FrameReader reads text, binary, ping, pong and close, whole or a byte at a time", () => {
  const bytes = concat(
    clientFrame(OP.text, "héllo"),
    clientFrame(OP.binary, new Uint8Array([1, 2, 3])),
    clientFrame(OP.ping, "p"),
    clientFrame(OP.pong, ""),
    clientFrame(OP.text, "x".repeat(300)),
    clientFrame(OP.text, "y".repeat(70_000), { lengthBytes: 8 }),
    clientFrame(OP.close, closePayload(4000, "bye")),
  );
  const want: WsMessage[] = [
    { kind: "text", text: "héllo" },
    { kind: "binary", data: new Uint8Array([1, 2, 3]) },
    { kind: "ping", data: new TextEncoder().encode("p") },
    { kind: "pong" },
    { kind: "text", text: "x".repeat(300) },
    { kind: "text", text: "y".repeat(70_000) },
    { kind: "close", code: 4000, reason: "bye" },
  ];
  // push() unmasks in place: each reader gets its own copy.
  deepStrictEqual(new FrameReader(128 * 1024).push(bytes.slice()), want);
  const reader = new FrameReader(128 * 1024);
  const got: WsMessage[] = [];
  for (let i = 0; i < bytes.length; i++) got.push(...reader.push(bytes.subarray(i, i + 1)));
  deepStrictEqual(got, want);
});

Deno.test("FrameReader joins a fragmented message, with control frames between the fragments", () => {
  const reader = new FrameReader(MAX);
  deepStrictEqual(
    reader.push(concat(
      clientFrame(OP.text, "ab", { fin: false }),
      clientFrame(OP.ping, ""),
      clientFrame(OP.continuation, "c", { fin: false }),
      clientFrame(OP.continuation, "d"),
    )),
    [{ kind: "ping", data: new Uint8Array(0) }, { kind: "text", text: "abcd" }],
  );
});

Deno.test("FrameReader says how many bytes a partial frame still needs", () => {
  const reader = new FrameReader(MAX);
  const frame = clientFrame(OP.text, "z".repeat(5000));
  strictEqual(reader.wanted, 0);
  reader.push(frame.subarray(0, 3));
  strictEqual(reader.wanted, 8 - 3, "the rest of the header");
  reader.push(frame.subarray(3, 100));
  strictEqual(reader.wanted, frame.length - 100);
});

Deno.test("FrameReader refuses what a server must refuse, with the close code", () => {
  refusedWith(1002, clientFrame(OP.text, "a", { masked: false }));
  refusedWith(1002, clientFrame(OP.text, "a", { rsv: 4 }));
  refusedWith(1002, clientFrame(0x3, "a"));
  refusedWith(1002, clientFrame(OP.ping, "a", { fin: false }));
  refusedWith(1002, clientFrame(OP.ping, "p".repeat(126)));
  refusedWith(1002, clientFrame(OP.continuation, "a"));
  refusedWith(1002, clientFrame(OP.text, "a", { fin: false }), clientFrame(OP.text, "b"));
  refusedWith(1002, clientFrame(OP.close, new Uint8Array([3])));
  for (const code of [999, 1004, 1005, 1006, 1015, 2999, 5000]) {
    refusedWith(1002, clientFrame(OP.close, closePayload(code)));
  }
  refusedWith(1007, clientFrame(OP.text, new Uint8Array([0xc3, 0x28])));
  refusedWith(1007, clientFrame(OP.close, concat(closePayload(1000), new Uint8Array([0xff]))));
  refusedWith(1009, clientFrame(OP.binary, new Uint8Array(MAX + 1)));
  refusedWith(
    1009,
    clientFrame(OP.text, "a".repeat(MAX / 2), { fin: false }),
    clientFrame(OP.continuation, "a".repeat(MAX / 2 + 1)),
  );
});

Deno.test("FrameReader refuses a too-big frame from its header alone, before the payload", () => {
  const header = clientFrame(OP.binary, new Uint8Array(MAX + 1)).subarray(0, 14);
  refusedWith(1009, header);
  const huge = new Uint8Array([0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  refusedWith(1009, huge);
});

Deno.test("FrameReader takes a close without a code as 1005", () => {
  deepStrictEqual(new FrameReader(MAX).push(clientFrame(OP.close, "")), [
    { kind: "close", code: 1005, reason: "" },
  ]);
});

Deno.test("FrameReader throws only WsProtocolError on random bytes (seeded)", () => {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  for (let round = 0; round < 2000; round++) {
    const reader = new FrameReader(4096);
    const bytes = new Uint8Array(1 + next() % 64).map(() => next() & 0xff);
    if (round % 2 === 0) bytes[1]! |= 0x80; // masked, to get past the first check
    try {
      reader.push(bytes);
    } catch (error) {
      strictEqual(error instanceof WsProtocolError, true, String(error));
    }
  }
});

Deno.test("encodeText and encodeClose write unmasked frames with the right lengths", () => {
  deepStrictEqual([...encodeText("hi")], [0x81, 2, 0x68, 0x69]);
  const mid = encodeText("é".repeat(100)); // 200 bytes: 16-bit length
  deepStrictEqual([mid[0], mid[1], mid[2], mid[3], mid.length], [0x81, 126, 0, 200, 204]);
  const big = encodeText("a".repeat(70_000));
  deepStrictEqual([big[0], big[1], big.length], [0x81, 127, 70_010]);
  strictEqual(new DataView(big.buffer).getBigUint64(2), 70_000n);
  const close = encodeClose(4002, "é".repeat(100));
  strictEqual(close[1]! <= 125, true, "a control frame stays within 125 bytes");
  const reason = close.subarray(4);
  strictEqual(new TextDecoder("utf-8", { fatal: true }).decode(reason), "é".repeat(61));
  deepStrictEqual([close[0], close[2], close[3]], [0x88, 4002 >> 8, 4002 & 0xff]);
});

Deno.test("TextFrames encodes a string once for consecutive sends of it", () => {
  const frames = new TextFrames();
  const text = JSON.stringify({ cmd: 10, content: "to the whole group" });
  const first = frames.encode(text);
  strictEqual(frames.encode(text), first, "the same bytes for the next member");
  deepStrictEqual(first, encodeText(text));
  const other = frames.encode("other");
  deepStrictEqual(other, encodeText("other"));
  deepStrictEqual(frames.encode(text), first, "a new string is encoded anew");
});

Deno.test("FrameReader's binary, ping and fragment payloads outlive the read buffer they came in", () => {
  const reader = new FrameReader(MAX);
  const buf = concat(
    clientFrame(OP.binary, new Uint8Array([7, 8, 9])),
    clientFrame(OP.ping, "pp"),
    clientFrame(OP.text, "ab", { fin: false }),
  );
  const got = reader.push(buf);
  // The socket reads its next bytes into the same buffer.
  buf.fill(0);
  deepStrictEqual(got, [
    { kind: "binary", data: new Uint8Array([7, 8, 9]) },
    { kind: "ping", data: new TextEncoder().encode("pp") },
  ]);
  const next = clientFrame(OP.continuation, "c");
  deepStrictEqual(reader.push(next), [{ kind: "text", text: "abc" }]);
});

Deno.test("TextFrames encodes every size exactly as encodeText does", () => {
  const frames = new TextFrames();
  const texts = [
    "",
    "short",
    "a".repeat(41),
    "b".repeat(42),
    "é".repeat(60), // 120 bytes: a 2-byte header from the scratch path
    "é".repeat(63), // 126 bytes: the first 4-byte header
    "x".repeat(300),
    "ü€😀".repeat(1000),
    "é".repeat(16_000), // 32,000 bytes: more than the scratch holds
    "z".repeat(20_000),
    "y".repeat(70_000), // an 8-byte length
  ];
  for (const text of texts) {
    deepStrictEqual(frames.encode(text), encodeText(text), `${text.length} units`);
  }
});
