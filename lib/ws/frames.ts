/**
 * RFC 6455 frames as a server sees them: a pure, incremental reader of
 * client frames and a writer of server frames. The reader takes bytes as
 * they come off the socket and returns whole messages (text, binary, close,
 * ping, pong); anything a server must refuse throws {@linkcode WsProtocolError}
 * with the close code to send. No sockets here.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import { CLOSE } from "../close_codes.ts";

/** Opcodes (RFC 6455 §5.2). */
export const OP = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

/** A complete message from the client. */
export type WsMessage =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "binary"; readonly data: Uint8Array }
  | { readonly kind: "close"; readonly code: number; readonly reason: string }
  | { readonly kind: "ping"; readonly data: Uint8Array }
  | { readonly kind: "pong" };

/** Frames a server must refuse, with the close code that says why. */
export class WsProtocolError extends Error {
  /** 1002 protocol error, 1007 invalid UTF-8, 1009 too big. */
  readonly code: number;

  /** An error to close the connection with `code`. */
  constructor(code: number, message: string) {
    super(message);
    this.name = "WsProtocolError";
    this.code = code;
  }
}

const PROTOCOL = CLOSE.protocolError.code;
const INVALID_TEXT = CLOSE.invalidText.code;
const TOO_BIG = CLOSE.tooBig.code;

const DECODER = new TextDecoder("utf-8", { fatal: true });
const EMPTY = new Uint8Array(0);

function utf8(bytes: Uint8Array): string {
  try {
    return DECODER.decode(bytes);
  } catch {
    throw new WsProtocolError(INVALID_TEXT, "Text is not valid UTF-8");
  }
}

/** Close codes a peer may send (RFC 6455 §7.4). */
function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * Reads client frames from a byte stream. Each reader is one connection's
 * state: a partial frame, and the fragments of a message in progress.
 */
export class FrameReader {
  #maxMessage: number;
  #pending: Uint8Array = EMPTY;
  /** Opcode of the fragmented message in progress, or -1. */
  #fragmentOp = -1;
  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;

  /** A reader refusing messages over `maxMessageBytes` (1009). */
  constructor(maxMessageBytes: number) {
    this.#maxMessage = maxMessageBytes;
  }

  /**
   * Bytes a partial frame still needs before it can be read, as far as its
   * header tells (0 when no frame is in progress): the caller may size its
   * next read by it.
   */
  get wanted(): number {
    const p = this.#pending;
    const size = frameSize(p, 0);
    if (size === undefined) return 0;
    const head = size.header + 4; // and the mask key
    if (size.length < 0 || p.length < head) return head - p.length;
    return Math.max(0, head + size.length - p.length);
  }

  /**
   * Feed `bytes`; returns the messages they complete, in order. Throws
   * `WsProtocolError`. Payloads are unmasked in place, so `bytes` is changed:
   * pass a read buffer that is read into again, not bytes kept elsewhere.
   */
  push(bytes: Uint8Array): WsMessage[] {
    const buf = this.#pending.length > 0 ? concatBytes([this.#pending, bytes]) : bytes;
    const out: WsMessage[] = [];
    let at = 0;
    for (;;) {
      const used = this.#frame(buf, at, out);
      if (used === 0) break;
      at += used;
    }
    // Keep only the unread tail, copied so the caller may reuse its buffer.
    this.#pending = at === buf.length ? EMPTY : buf.slice(at);
    return out;
  }

  /** Read one frame at `at`; returns its length, or 0 if it is not all here yet. */
  #frame(buf: Uint8Array, at: number, out: WsMessage[]): number {
    if (buf.length - at < 2) return 0;
    const b0 = buf[at]!;
    const b1 = buf[at + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const op = b0 & 0x0f;
    if ((b0 & 0x70) !== 0) throw new WsProtocolError(PROTOCOL, "Reserved bits set");
    if ((b1 & 0x80) === 0) throw new WsProtocolError(PROTOCOL, "Client frames must be masked");
    const size = frameSize(buf, at);
    if (size === undefined || size.length < 0) return 0;
    const { header, length } = size;
    if (header === 10 && length > this.#maxMessage) {
      throw new WsProtocolError(TOO_BIG, `Frame of ${length} bytes is too big`);
    }
    const control = op >= 0x8;
    if (control && (!fin || length > 125)) {
      throw new WsProtocolError(PROTOCOL, "Control frames must be whole and at most 125 bytes");
    }
    if (!control && length + this.#fragmentBytes > this.#maxMessage) {
      throw new WsProtocolError(TOO_BIG, `Message over ${this.#maxMessage} bytes`);
    }
    const total = header + 4 + length;
    if (buf.length - at < total) return 0;
    // Unmasked in place: `buf` is the caller's read buffer or our own join,
    // read no further once this returns. What outlives the call is copied.
    const maskAt = at + header;
    const start = maskAt + 4;
    for (let i = 0; i < length; i++) buf[start + i]! ^= buf[maskAt + (i & 3)]!;
    this.#message(op, fin, buf.subarray(start, start + length), out);
    return total;
  }

  #message(op: number, fin: boolean, payload: Uint8Array, out: WsMessage[]): void {
    switch (op) {
      case OP.close: {
        if (payload.length === 1) throw new WsProtocolError(PROTOCOL, "Close payload of one byte");
        if (payload.length === 0) {
          out.push({ kind: "close", code: 1005, reason: "" });
          return;
        }
        const code = (payload[0]! << 8) | payload[1]!;
        if (!validCloseCode(code)) throw new WsProtocolError(PROTOCOL, `Close code ${code}`);
        out.push({ kind: "close", code, reason: utf8(payload.subarray(2)) });
        return;
      }
      case OP.ping:
        out.push({ kind: "ping", data: payload.slice() });
        return;
      case OP.pong:
        out.push({ kind: "pong" });
        return;
      case OP.text:
      case OP.binary:
        if (this.#fragmentOp !== -1) {
          throw new WsProtocolError(PROTOCOL, "New message inside a fragmented one");
        }
        if (fin) {
          // A binary payload outlives the read buffer it is a view of.
          out.push(data(op, op === OP.binary ? payload.slice() : payload));
          return;
        }
        this.#fragmentOp = op;
        this.#fragments = [payload.slice()];
        this.#fragmentBytes = payload.length;
        return;
      case OP.continuation: {
        if (this.#fragmentOp === -1) throw new WsProtocolError(PROTOCOL, "Continuation of nothing");
        this.#fragments.push(payload.slice());
        this.#fragmentBytes += payload.length;
        if (!fin) return;
        const whole = new Uint8Array(this.#fragmentBytes);
        let at = 0;
        for (const f of this.#fragments) {
          whole.set(f, at);
          at += f.length;
        }
        out.push(data(this.#fragmentOp, whole));
        this.#fragmentOp = -1;
        this.#fragments = [];
        this.#fragmentBytes = 0;
        return;
      }
      default:
        throw new WsProtocolError(PROTOCOL, `Unknown opcode ${op}`);
    }
  }
}

/**
 * The header size (without the mask key) and payload length of the frame at
 * `at`: undefined before its first two bytes, length -1 until its length
 * bytes are here. A 64-bit length past 2^53 is approximate, and over any limit.
 */
function frameSize(buf: Uint8Array, at: number): { header: number; length: number } | undefined {
  if (buf.length - at < 2) return undefined;
  const len7 = buf[at + 1]! & 0x7f;
  if (len7 < 126) return { header: 2, length: len7 };
  if (len7 === 126) {
    return { header: 4, length: buf.length - at < 4 ? -1 : (buf[at + 2]! << 8) | buf[at + 3]! };
  }
  if (buf.length - at < 10) return { header: 10, length: -1 };
  const view = new DataView(buf.buffer, buf.byteOffset + at + 2, 8);
  return { header: 10, length: Number(view.getBigUint64(0)) };
}

function data(op: number, payload: Uint8Array): WsMessage {
  return op === OP.text ? { kind: "text", text: utf8(payload) } : { kind: "binary", data: payload };
}

/** One unmasked server frame with FIN set. */
export function encodeFrame(op: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = new Uint8Array(header + n);
  frame[0] = 0x80 | op;
  if (n < 126) {
    frame[1] = n;
  } else if (n < 65536) {
    frame[1] = 126;
    frame[2] = n >>> 8;
    frame[3] = n & 0xff;
  } else {
    frame[1] = 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(n));
  }
  frame.set(payload, header);
  return frame;
}

const ENCODER = new TextEncoder();

/** A text frame of `text`, encoded straight into the frame (no second copy). */
export function encodeText(text: string): Uint8Array {
  // At most 3 bytes per UTF-16 unit; short messages skip the exact count.
  if (text.length * 3 < 126) {
    const frame = new Uint8Array(2 + text.length * 3);
    const { written } = ENCODER.encodeInto(text, frame.subarray(2));
    frame[0] = 0x81;
    frame[1] = written;
    return frame.subarray(0, 2 + written);
  }
  return encodeFrame(OP.text, ENCODER.encode(text));
}

/** A close frame with `code` and `reason` (cut to fit 125 bytes). */
export function encodeClose(code: number, reason: string): Uint8Array {
  let bytes = ENCODER.encode(reason);
  if (bytes.length > 123) {
    let cut = 123;
    while ((bytes[cut]! & 0xc0) === 0x80) cut--; // not inside a character
    bytes = bytes.subarray(0, cut);
  }
  const payload = new Uint8Array(2 + bytes.length);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(bytes, 2);
  return encodeFrame(OP.close, payload);
}

/** Scratch room of {@linkcode TextFrames}: frames up to this size skip a second buffer. */
const SCRATCH_BYTES = 16 * 1024;

/**
 * Text frames for the sockets of one front door. The last frame encoded is
 * kept for the next send of the same string: a group fan-out hands every
 * member's socket the same string, so the frame is encoded once and shared
 * (frames are never changed once queued). A frame is encoded into a scratch
 * buffer first, then copied into one of its exact size: one allocation per
 * frame, where `TextEncoder.encode` and the frame would be two.
 */
export class TextFrames {
  #text = "";
  #frame = encodeText("");
  #scratch = new Uint8Array(SCRATCH_BYTES);

  /** The frame of `text`, reused when `text` is the string encoded last. */
  encode(text: string): Uint8Array {
    if (text !== this.#text) {
      this.#frame = this.#encode(text);
      this.#text = text;
    }
    return this.#frame;
  }

  #encode(text: string): Uint8Array {
    if (text.length * 3 < 126 || text.length > SCRATCH_BYTES) return encodeText(text);
    const { read, written } = ENCODER.encodeInto(text, this.#scratch);
    if (read < text.length || written >= 65536) return encodeText(text);
    const header = written < 126 ? 2 : 4;
    const frame = new Uint8Array(header + written);
    frame[0] = 0x80 | OP.text;
    if (header === 2) {
      frame[1] = written;
    } else {
      frame[1] = 126;
      frame[2] = written >>> 8;
      frame[3] = written & 0xff;
    }
    frame.set(this.#scratch.subarray(0, written), header);
    return frame;
  }
}
