/** Client-side (masked) websocket frames, built by hand for tests of the server's reader. */

/** One masked frame; `fin` false for a fragment, `rsv` for reserved bits. */
export function clientFrame(
  op: number,
  payload: Uint8Array | string,
  options: { fin?: boolean; masked?: boolean; rsv?: number; lengthBytes?: 0 | 2 | 8 } = {},
): Uint8Array {
  const data = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const n = data.length;
  const lengthBytes = options.lengthBytes ?? (n < 126 ? 0 : n < 65536 ? 2 : 8);
  const masked = options.masked ?? true;
  const header = 2 + lengthBytes + (masked ? 4 : 0);
  const frame = new Uint8Array(header + n);
  frame[0] = ((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | op;
  const view = new DataView(frame.buffer);
  if (lengthBytes === 0) frame[1] = n;
  else if (lengthBytes === 2) {
    frame[1] = 126;
    view.setUint16(2, n);
  } else {
    frame[1] = 127;
    view.setBigUint64(2, BigInt(n));
  }
  if (!masked) {
    frame.set(data, header);
    return frame;
  }
  frame[1]! |= 0x80;
  const key = [0x37, 0xfa, 0x21, 0x3d];
  frame.set(key, header - 4);
  for (let i = 0; i < n; i++) frame[header + i] = data[i]! ^ key[i & 3]!;
  return frame;
}

/** A close frame's payload: the code, then the reason. */
export function closePayload(code: number, reason = ""): Uint8Array {
  const r = new TextEncoder().encode(reason);
  const p = new Uint8Array(2 + r.length);
  p[0] = code >> 8;
  p[1] = code & 0xff;
  p.set(r, 2);
  return p;
}
