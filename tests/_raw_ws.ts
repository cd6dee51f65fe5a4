/**
 * Websocket clients over a raw TCP socket, for tests that must see the HTTP
 * status of a handshake, send a frame by hand, or refuse to read.
 *
 * @module
 */

/** A websocket handshake over a raw TCP socket, so a test sees the HTTP status and can refuse to read. */
export async function rawHandshake(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ conn: Deno.TcpConn; status: number; rest: Uint8Array }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  await conn.write(new TextEncoder().encode(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${btoa("0123456789abcdef")}\r\n` +
      `Sec-WebSocket-Version: 13\r\n${extra}\r\n`,
  ));
  let buf: Uint8Array = new Uint8Array(0);
  for (;;) {
    const chunk = new Uint8Array(4096);
    const n = await conn.read(chunk);
    if (n === null) break;
    buf = concat(buf, chunk.subarray(0, n));
    const text = new TextDecoder().decode(buf);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const head = new TextEncoder().encode(text.slice(0, end + 4)).length;
      return {
        conn,
        status: Number(text.split(" ")[1]),
        rest: buf.subarray(head),
      };
    }
  }
  return { conn, status: 0, rest: buf };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Read unmasked server frames from a raw socket until a close frame; returns
 * the count of text frames and the close code (0 if the socket ended first).
 */
export async function readUntilClose(
  conn: Deno.TcpConn,
  start: Uint8Array,
): Promise<{ texts: number; closeCode: number }> {
  let buf: Uint8Array = start;
  let texts = 0;
  for (;;) {
    // Parse as many whole frames as the buffer holds.
    for (;;) {
      if (buf.length < 2) break;
      const opcode = buf[0]! & 0x0f;
      let len = buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) break;
        len = (buf[2]! << 8) | buf[3]!;
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) break;
        len = Number(new DataView(buf.buffer, buf.byteOffset + 2, 8).getBigUint64(0));
        off = 10;
      }
      if (buf.length < off + len) break;
      if (opcode === 0x8) {
        const code = len >= 2 ? (buf[off]! << 8) | buf[off + 1]! : 1005;
        return { texts, closeCode: code };
      }
      if (opcode === 0x1) texts++;
      buf = buf.subarray(off + len);
    }
    const chunk = new Uint8Array(256 * 1024);
    const n = await conn.read(chunk);
    if (n === null) return { texts, closeCode: 0 };
    buf = concat(buf, chunk.subarray(0, n));
  }
}

/** Write one small masked text frame (under 126 bytes) on a raw socket. */
export async function rawSendText(conn: Deno.TcpConn, text: string): Promise<void> {
  const payload = new TextEncoder().encode(text);
  if (payload.length >= 126) throw new RangeError("Frame too long for rawSendText");
  // A zero mask key leaves the payload as is.
  await conn.write(concat(new Uint8Array([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload));
}
