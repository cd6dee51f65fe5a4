/**
 * The head of an HTTP/1.1 request, as the front door reads it to pick out
 * websocket upgrades of `/chat`. Pure. Anything unusual (non-ASCII bytes,
 * folded lines, odd names) parses to `undefined`: the front door then hands
 * the connection to the HTTP server unchanged, which answers as it always did.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** A parsed request line and its header fields. */
export interface RequestHead {
  readonly method: string;
  /** The request target as sent (`/chat?token=…`). */
  readonly target: string;
  readonly headers: readonly (readonly [string, string])[];
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const TARGET = /^\/[\x21-\x7e]*$/;
/** Decodes the head once it is known to be ASCII (stateless: no `stream` option is used). */
const ASCII = new TextDecoder();

/**
 * Index just past the blank line ending the head in `buf[0, length)`, or -1;
 * `from` is where the bytes not yet searched start.
 */
export function headEnd(buf: Uint8Array, length: number, from = 0): number {
  for (let i = Math.max(3, from); i < length; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) return i + 1;
  }
  return -1;
}

/** The head in `bytes` (ending with its blank line), or undefined if it is not a plain one. */
export function parseRequestHead(bytes: Uint8Array): RequestHead | undefined {
  // An index loop and one decode: `for…of` over the bytes and a spread into
  // String.fromCharCode made some 25 KiB of garbage per connect (issue #7).
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b >= 0x80 || b === 0) return undefined;
  }
  const lines = ASCII.decode(bytes).split("\r\n");
  const [method, target, version, ...extra] = lines[0]!.split(" ");
  if (
    extra.length > 0 || method === undefined || !TOKEN.test(method) ||
    target === undefined || !TARGET.test(target) || version !== "HTTP/1.1"
  ) {
    return undefined;
  }
  const headers: [string, string][] = [];
  // The last two entries are the blank line's.
  for (const line of lines.slice(1, -2)) {
    const colon = line.indexOf(":");
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return undefined;
    const value = line.slice(colon + 1).trim();
    if (/[\r\n]/.test(value)) return undefined;
    headers.push([name.toLowerCase(), value]);
  }
  return { method, target, headers };
}

/** The value of header `name` (lower case), fields of the same name joined by ", ". */
export function header(head: RequestHead, name: string): string | undefined {
  const values = head.headers.filter(([n]) => n === name).map(([, v]) => v);
  return values.length === 0 ? undefined : values.join(", ");
}

/** Whether `head` asks to open the chat websocket. */
export function isChatUpgrade(head: RequestHead): boolean {
  const path = head.target.split("?", 1)[0];
  return head.method === "GET" && path === "/chat" &&
    header(head, "upgrade")?.toLowerCase() === "websocket";
}

/**
 * The `Sec-WebSocket-Key` of a valid RFC 6455 handshake (version 13 and a
 * 16-byte base64 key), or undefined.
 */
export function websocketKey(headers: Headers): string | undefined {
  const key = headers.get("sec-websocket-key") ?? "";
  return headers.get("sec-websocket-version") === "13" && /^[A-Za-z0-9+/]{22}==$/.test(key)
    ? key
    : undefined;
}

/** `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest(
    "base64",
  );
}
