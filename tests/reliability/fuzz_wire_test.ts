/**
 * Fuzzing the websocket wire format below the JSON: after a real handshake
 * on `/chat`, each connection sends valid frames, then one frame that breaks
 * one RFC 6455 rule (seeded). The server must answer with a close frame
 * carrying that rule's code (1002, 1007 or 1009), end the connection, store
 * nothing, and keep serving everyone else.
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { concatBytes } from "../../lib/bytes.ts";
import { CLOSE } from "../../lib/close_codes.ts";
import { OP } from "../../lib/ws/frames.ts";
import { startChatServer } from "../_chat_helpers.ts";
import { catchPrinted } from "../_printed.ts";
import { clientFrame, closePayload } from "../_ws_client_frames.ts";
import { assertServingNothingStored, Rng, SEED } from "./_fuzz.ts";

const CONNECTIONS = 400;
const AT_ONCE = 25;

const PROTOCOL = CLOSE.protocolError.code;

/** One frame breaking one rule, and the close code the server must send for it. */
function badWireFrame(rng: Rng): { bytes: Uint8Array; code: number; rule: string } {
  const junk = rng.bytes(rng.int(40));
  switch (rng.int(11)) {
    case 0:
      return {
        bytes: clientFrame(OP.text, '{"cmd":0}', { masked: false }),
        code: PROTOCOL,
        rule: "unmasked",
      };
    case 1:
      return {
        bytes: clientFrame(OP.text, junk, { rsv: 1 + rng.int(7) }),
        code: PROTOCOL,
        rule: "rsv",
      };
    case 2:
      return {
        bytes: clientFrame(rng.pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), junk),
        code: PROTOCOL,
        rule: "opcode",
      };
    case 3:
      return {
        bytes: clientFrame(OP.ping, junk, { fin: false }),
        code: PROTOCOL,
        rule: "fragmented ping",
      };
    case 4:
      return {
        bytes: clientFrame(OP.ping, rng.bytes(126 + rng.int(300))),
        code: PROTOCOL,
        rule: "long ping",
      };
    case 5:
      return {
        bytes: clientFrame(OP.continuation, junk),
        code: PROTOCOL,
        rule: "lone continuation",
      };
    case 6: {
      const first = clientFrame(OP.text, "{", { fin: false });
      const second = clientFrame(OP.text, "}");
      const bytes = new Uint8Array(first.length + second.length);
      bytes.set(first);
      bytes.set(second, first.length);
      return { bytes, code: PROTOCOL, rule: "text inside fragments" };
    }
    case 7:
      return {
        bytes: clientFrame(OP.close, new Uint8Array([rng.int(256)])),
        code: PROTOCOL,
        rule: "1-byte close",
      };
    case 8:
      return {
        bytes: clientFrame(
          OP.close,
          closePayload(rng.pick([0, 999, 1004, 1005, 1006, 1015, 2000, 5000, 65535])),
        ),
        code: PROTOCOL,
        rule: "close code",
      };
    case 9: {
      // Valid UTF-8 around one invalid sequence.
      const bad = rng.pick([[0xc3, 0x28], [0xe2, 0x82], [0xf0, 0x28, 0x8c, 0x28], [0xff], [
        0xed,
        0xa0,
        0x80,
      ]]);
      const bytes = new Uint8Array([0x7b, ...bad, 0x7d]);
      return { bytes: clientFrame(OP.text, bytes), code: CLOSE.invalidText.code, rule: "utf-8" };
    }
    default: {
      // A header announcing more than 1 MiB: refused before any payload.
      const head = new Uint8Array(14);
      head[0] = 0x80 | OP.text;
      head[1] = 0x80 | 127;
      new DataView(head.buffer).setBigUint64(2, BigInt(1024 * 1024 + 1 + rng.int(1 << 30)));
      return { bytes: head, code: CLOSE.tooBig.code, rule: "too big" };
    }
  }
}

/**
 * Read until the server's close frame (its code), or until the connection
 * ends or `timeoutMs` passes (-1, or -2 without a 101). The caller then
 * hangs up, as a client does after the close.
 */
async function readCloseCode(conn: Deno.Conn, timeoutMs: number): Promise<number> {
  const timer = setTimeout(() => conn.close(), timeoutMs);
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  try {
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n !== null) parts.push(buf.slice(0, n));
      const code = closeCodeIn(concatBytes(parts));
      if (n === null || code >= 0) return code;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** The code of the close frame in what the server sent after its 101 head; -1 until it is all here, -2 without a 101. */
function closeCodeIn(bytes: Uint8Array): number {
  const text = new TextDecoder().decode(bytes);
  const headEnd = text.indexOf("\r\n\r\n");
  if (headEnd < 0) return -1; // not all here yet
  if (!text.startsWith("HTTP/1.1 101 ")) return -2;
  let at = headEnd + 4;
  while (at + 2 <= bytes.length) {
    const op = bytes[at]! & 0x0f;
    let n = bytes[at + 1]! & 0x7f;
    let h = 2;
    if (n === 126) {
      n = (bytes[at + 2]! << 8) | bytes[at + 3]!;
      h = 4;
    }
    if (at + h + n > bytes.length) return -1; // not all here yet
    if (op === OP.close) return (bytes[at + h]! << 8) | bytes[at + h + 1]!;
    at += h + n;
  }
  return -1;
}

Deno.test(`Wire fuzz: ${CONNECTIONS} connections each break one websocket rule and get its close code (seed ${SEED})`, async () => {
  await using server = await startChatServer();
  using printed = catchPrinted();
  const rng = new Rng(SEED ^ 0x3173);
  const users = [];
  for (let i = 0; i < AT_ONCE; i++) users.push(await server.user(`wire${i}`));
  const mismatches: string[] = [];
  const rules = new Map<string, number>();
  for (let start = 0; start < CONNECTIONS; start += AT_ONCE) {
    await Promise.all(users.map(async (user) => {
      const bad = badWireFrame(rng);
      rules.set(bad.rule, (rules.get(bad.rule) ?? 0) + 1);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      const head = `GET /chat?id=${user.id}&token=${encodeURIComponent(user.token)} HTTP/1.1\r\n` +
        "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
      await conn.write(new TextEncoder().encode(head));
      // A heartbeat first, so the bad frame meets an open session.
      await conn.write(clientFrame(OP.text, '{"cmd":0}'));
      await conn.write(bad.bytes).catch(() => {});
      const code = await readCloseCode(conn, 10_000);
      try {
        conn.close();
      } catch {
        // Closed by the timeout.
      }
      if (code !== bad.code) mismatches.push(`${bad.rule}: got ${code}, want ${bad.code}`);
    }));
  }
  deepStrictEqual(mismatches.slice(0, 10), [], `seed ${SEED}: ${mismatches.length} mismatches`);
  printed.assertNone(`seed ${SEED}`);
  strictEqual(rules.size, 11, `every rule was tried: ${[...rules.keys()]}`);
  // The server still serves, and nothing of the fuzz was stored.
  await assertServingNothingStored(server);
});
