/**
 * Reading request bodies with a byte limit, and turning JSON or
 * form-urlencoded bodies into flat string fields. The query string is merged
 * under the body fields, like the seed's `ParseForm`.
 *
 * @module
 */

import { ClientError } from "../errors.ts";

/** Flat request fields: every value a string, first occurrence wins. */
export type Fields = Readonly<Record<string, string>>;

/** Options for {@linkcode readFields}, {@linkcode readLimited} and {@linkcode bodyChunks}. */
export interface ReadOptions {
  /** Largest accepted body in bytes; more is answered 413. */
  maxBytes: number;
  /**
   * Time the whole body may take to arrive, ms; past it the read is
   * cancelled and answered 408 (`timeout`). @default {no limit}
   */
  timeoutMs?: number;
}

/**
 * The body of `req` as it arrives, failing with `too_large` as soon as more
 * than `maxBytes` arrive, and with `timeout` if `timeoutMs` passes first. A
 * `Content-Length` above the limit fails before anything is read; a smaller
 * one is not trusted. When the caller stops early (a `break` or a throw in
 * its loop) the reader is cancelled, so the rest of the body is dropped
 * unread.
 */
export async function* bodyChunks(
  req: Request,
  options: ReadOptions,
): AsyncGenerator<Uint8Array, void, undefined> {
  const { maxBytes, timeoutMs } = options;
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (Number.isFinite(declared) && declared > maxBytes) {
    await req.body?.cancel();
    throw tooLarge(maxBytes);
  }
  if (req.body === null) return;
  const reader = req.body.getReader();
  let size = 0;
  let expired = false;
  let ended = false;
  // One timer for the whole read: it cancels the reader, so the pending read ends.
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
    expired = true;
    reader.cancel().catch(() => {});
  }, timeoutMs);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (expired) {
        throw new ClientError(
          "timeout",
          `Body not received within ${Math.ceil((timeoutMs ?? 0) / 1000)} s`,
        );
      }
      if (done) {
        ended = true;
        return;
      }
      size += value.byteLength;
      if (size > maxBytes) throw tooLarge(maxBytes);
      yield value;
    }
  } finally {
    clearTimeout(timer);
    if (!ended) await reader.cancel().catch(() => {});
  }
}

/**
 * Read the whole body of `req` within the limits of {@linkcode bodyChunks}.
 * The chunks are copied into one growing buffer as they come, so a body
 * trickled in tiny pieces costs its bytes, not an object per piece.
 */
export async function readLimited(
  req: Request,
  options: ReadOptions,
): Promise<Uint8Array<ArrayBuffer>> {
  const { maxBytes } = options;
  const declared = Number(req.headers.get("content-length") ?? "0");
  let buffer = new Uint8Array(0);
  let size = 0;
  for await (const value of bodyChunks(req, options)) {
    if (size + value.byteLength > buffer.byteLength) {
      // The first chunk sizes the buffer by the declared length, which `bodyChunks` checked.
      const grown = new Uint8Array(
        size === 0 && Number.isSafeInteger(declared) && declared >= value.byteLength
          ? declared
          : Math.min(maxBytes, Math.max(buffer.byteLength * 2, size + value.byteLength, 16 * 1024)),
      );
      grown.set(buffer.subarray(0, size));
      buffer = grown;
    }
    buffer.set(value, size);
    size += value.byteLength;
  }
  return buffer.subarray(0, size);
}

/**
 * The fields of a request: its query string, overlaid by a JSON object body
 * (strings, numbers and booleans; `null` counts as absent) or a
 * form-urlencoded body. Throws `ClientError` with 400 (junk JSON, nested
 * values, bad UTF-8), 413 (too large) or 415 (other content types).
 */
export async function readFields(
  req: Request,
  options: ReadOptions,
): Promise<Fields> {
  const fields = queryFields(req);
  const type = mediaType(req.headers.get("content-type"));
  if (req.body === null || req.method === "GET" || req.method === "HEAD") {
    return fields;
  }
  const bytes = await readLimited(req, options);
  if (bytes.byteLength === 0) return fields;
  const text = decodeUtf8(bytes);
  if (type === "application/json") {
    Object.assign(fields, parseJsonFields(text));
  } else if (type === "application/x-www-form-urlencoded") {
    Object.assign(fields, parseUrlEncoded(text));
  } else {
    throw new ClientError(
      "unsupported_type",
      "Body must be application/json or application/x-www-form-urlencoded",
    );
  }
  return fields;
}

/**
 * The fields of a JSON object text. Pure. Throws `ClientError("bad_request")`
 * for junk, a non-object, or a nested value.
 */
export function parseJsonFields(text: string): Record<string, string> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ClientError("bad_request", "Body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ClientError("bad_request", "JSON body must be an object");
  }
  const out: Record<string, string> = Object.create(null);
  for (const [key, v] of Object.entries(value)) {
    if (v === null) continue;
    // An unpaired surrogate ("\ud800") has no UTF-8: the store would keep U+FFFD instead.
    if (!key.isWellFormed() || (typeof v === "string" && !v.isWellFormed())) {
      throw new ClientError(
        "bad_request",
        `Field "${key.slice(0, 40)}" holds an unpaired UTF-16 surrogate: not valid Unicode text`,
      );
    }
    if (typeof v === "string") out[key] = v;
    else if (typeof v === "number" && Number.isFinite(v)) out[key] = String(v);
    else if (typeof v === "boolean") out[key] = String(v);
    else {
      throw new ClientError(
        "bad_request",
        `Field "${key.slice(0, 40)}" must be a string, number or boolean`,
      );
    }
  }
  return out;
}

/** The lower-case media type of a Content-Type header, without parameters. */
export function mediaType(header: string | null): string {
  return (header ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

/** The query string's fields (the first value of a repeated key), a new object. */
export function queryFields(req: Request): Record<string, string> {
  return parseUrlEncoded(new URL(req.url).search.slice(1));
}

/**
 * The fields of an `application/x-www-form-urlencoded` text (a body or a
 * query string without its `?`), the first value of a repeated key. Pure.
 * Unlike `URLSearchParams`, which turns a bad escape into U+FFFD (so
 * `nickname=%ff` was stored as "\ufffd"), a `%` escape that is not UTF-8
 * is refused with `ClientError("bad_request")` naming the field.
 */
export function parseUrlEncoded(text: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (const pair of text.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const rawKey = eq < 0 ? pair : pair.slice(0, eq);
    const key = decodeFormPart(rawKey, rawKey);
    if (key in out) continue;
    out[key] = eq < 0 ? "" : decodeFormPart(pair.slice(eq + 1), key);
  }
  return out;
}

function decodeFormPart(raw: string, name: string): string {
  const text = raw.replaceAll("+", " ");
  if (!text.includes("%")) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    throw new ClientError(
      "bad_request",
      `Field "${name.slice(0, 40)}" is not valid UTF-8 once its % escapes are decoded`,
    );
  }
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ClientError("bad_request", "Body is not valid UTF-8");
  }
}

function tooLarge(maxBytes: number): ClientError {
  return new ClientError("too_large", `Body exceeds ${maxBytes} bytes`);
}
