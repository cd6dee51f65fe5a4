/**
 * A streaming `multipart/form-data` parser (RFC 7578 over RFC 2046). Fed a
 * body in chunks of any size, {@linkcode MultipartParser} emits each part's
 * headers, its bytes and its end; between chunks it keeps no more than a
 * boundary's length of bytes (and a part's header section until it is
 * complete). `FileForm` (upload_form.ts) sits on top for uploads. Pure (no
 * I/O), so a body costs a few chunks of memory, not its size.
 *
 * @module
 */

import { ClientError } from "../errors.ts";

/**
 * Why a multipart body was refused, the `reason` of a {@linkcode MultipartError}:
 * its syntax (`no_boundary` in the Content-Type, `no_closing_boundary`,
 * `bad_boundary_line` for a boundary followed by other text, `bad_header`),
 * its bounds (`headers_too_large`, `too_many_parts`, and an upload form's
 * `field_too_large` and `file_too_large`), or an upload form's file part
 * (`no_file`, `duplicate_file`, `file_is_text` when it has no filename).
 */
export type MultipartErrorReason =
  | "no_boundary"
  | "no_closing_boundary"
  | "bad_boundary_line"
  | "bad_header"
  | "headers_too_large"
  | "too_many_parts"
  | "field_too_large"
  | "file_too_large"
  | "no_file"
  | "duplicate_file"
  | "file_is_text";

/** A refused multipart body: 413 for a field or file too large, 400 for the rest. */
export class MultipartError extends ClientError {
  /** What was wrong, for callers and tests; the message says it to the client. */
  readonly reason: MultipartErrorReason;

  /** Build the error; `message` is shown to the client. */
  constructor(reason: MultipartErrorReason, message: string) {
    super(
      reason === "field_too_large" || reason === "file_too_large" ? "too_large" : "bad_request",
      message,
    );
    this.name = "MultipartError";
    this.reason = reason;
  }
}

/** Bounds on a body's shape, enforced while it is parsed. */
export interface MultipartLimits {
  /** Largest header section of one part, bytes. @default {4096} */
  readonly maxHeaderBytes?: number;
  /** Most parts in one body. @default {32} */
  readonly maxParts?: number;
}

/** What a part's headers say. */
export interface PartHeaders {
  /** The Content-Disposition `name`. */
  readonly name: string;
  /** The Content-Disposition `filename` (or `filename*`); undefined for a text field. */
  readonly filename: string | undefined;
}

/**
 * One step of a body: a part begins (its headers), some of its bytes
 * (a view of the pushed chunk or of a copy, in order, never empty), or it ends.
 */
export type MultipartEvent =
  | { readonly kind: "headers"; readonly part: PartHeaders }
  | { readonly kind: "data"; readonly bytes: Uint8Array }
  | { readonly kind: "end" };

/** RFC 2046's longest boundary. */
const MAX_BOUNDARY = 70;
/** Spaces allowed after a boundary before its line break (RFC 2046 transport padding). */
const MAX_PADDING = 64;
const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const SP = 0x20;
const HT = 0x09;
const HEADER_END = [CR, LF, CR, LF];
const EMPTY = new Uint8Array(0);

/**
 * The boundary of a `multipart/form-data` Content-Type. Pure. Throws
 * {@linkcode MultipartError} (`no_boundary`) when it is missing, empty,
 * longer than 70 characters or not printable ASCII.
 */
export function parseBoundary(contentType: string | null): string {
  const boundary = parseHeaderValue(contentType ?? "")?.params.get("boundary");
  if (boundary === undefined || boundary === "") {
    throw new MultipartError(
      "no_boundary",
      "Malformed multipart body: the Content-Type has no boundary parameter",
    );
  }
  if (boundary.length > MAX_BOUNDARY || !/^[\x20-\x7e]+$/.test(boundary)) {
    throw new MultipartError(
      "no_boundary",
      `Malformed multipart body: the boundary must be 1 to ${MAX_BOUNDARY} printable ASCII characters`,
    );
  }
  return boundary;
}

type State = "preamble" | "headers" | "data" | "padding" | "padding_lf" | "epilogue";

/**
 * An incremental multipart parser for one body. `push` each chunk as it
 * arrives and act on the events it returns, then call `finish` at the end
 * of the body. Throws {@linkcode MultipartError} on malformed input; after
 * a throw the parser is spent.
 */
export class MultipartParser {
  #delimiter: Uint8Array;
  #maxHeaderBytes: number;
  #maxParts: number;
  #state: State = "preamble";
  /**
   * Bytes that may begin a delimiter, kept for the next chunk. It starts as
   * a line break, so a boundary at the very start is found like any other.
   */
  #carry: Uint8Array = Uint8Array.of(CR, LF);
  /** The header section so far, in one buffer allocated for the first part. */
  #head = new Uint8Array(0);
  #headBytes = 0;
  /** How much of CRLF CRLF the header section has ended with so far. */
  #headMatch = 0;
  #parts = 0;
  #padding = 0;

  /** A parser for a body delimited by `boundary` (see {@linkcode parseBoundary}). */
  constructor(boundary: string, limits: MultipartLimits = {}) {
    this.#delimiter = new TextEncoder().encode(`\r\n--${boundary}`);
    this.#maxHeaderBytes = limits.maxHeaderBytes ?? 4096;
    this.#maxParts = limits.maxParts ?? 32;
  }

  /** Whether the closing boundary has been read (what follows it is ignored). */
  get done(): boolean {
    return this.#state === "epilogue";
  }

  /** Parse the next chunk of the body; returns what it completed, in order. */
  push(chunk: Uint8Array): MultipartEvent[] {
    const events: MultipartEvent[] = [];
    let buf = chunk;
    if (this.#carry.length > 0) {
      buf = concat(this.#carry, chunk);
      this.#carry = EMPTY;
    }
    let pos = 0;
    while (pos < buf.length) {
      switch (this.#state) {
        case "preamble":
        case "data":
          pos = this.#scan(buf, pos, events);
          break;
        case "headers":
          pos = this.#headers(buf, pos, events);
          break;
        case "padding":
        case "padding_lf":
          pos = this.#pad(buf, pos);
          break;
        case "epilogue":
          pos = buf.length;
      }
    }
    return events;
  }

  /** The body has ended: throws `no_closing_boundary` unless it was complete. */
  finish(): void {
    if (this.#state !== "epilogue") {
      throw new MultipartError(
        "no_closing_boundary",
        "Malformed multipart body: it ends before its closing boundary",
      );
    }
  }

  /** Preamble or part bytes up to the next delimiter; returns where to go on. */
  #scan(buf: Uint8Array, pos: number, events: MultipartEvent[]): number {
    const d = this.#delimiter;
    let from = pos;
    for (;;) {
      const k = indexOf(buf, d, from);
      if (k < 0) {
        // The tail may be the start of a delimiter that the next chunk completes.
        const keep = prefixStart(buf, Math.max(from, buf.length - d.length + 1), d);
        this.#data(buf, pos, keep, events);
        this.#carry = buf.slice(keep);
        return buf.length;
      }
      // Two bytes after the delimiter tell a boundary from data that looks like one.
      if (k + d.length + 2 > buf.length) {
        this.#data(buf, pos, k, events);
        this.#carry = buf.slice(k);
        return buf.length;
      }
      const a = buf[k + d.length];
      const b = buf[k + d.length + 1];
      if (a === DASH && b === DASH) {
        this.#data(buf, pos, k, events);
        if (this.#state === "data") events.push({ kind: "end" });
        this.#state = "epilogue";
        return k + d.length + 2;
      }
      if ((a === CR && b === LF) || a === SP || a === HT) {
        this.#data(buf, pos, k, events);
        if (this.#state === "data") events.push({ kind: "end" });
        if (a === CR) {
          this.#startPart();
          return k + d.length + 2;
        }
        this.#state = "padding";
        this.#padding = 0;
        return k + d.length;
      }
      from = k + 1;
    }
  }

  #data(buf: Uint8Array, start: number, end: number, events: MultipartEvent[]): void {
    if (this.#state === "data" && end > start) {
      events.push({ kind: "data", bytes: buf.subarray(start, end) });
    }
  }

  /** Spaces after a boundary, then its line break. */
  #pad(buf: Uint8Array, pos: number): number {
    const c = buf[pos];
    if (this.#state === "padding" && (c === SP || c === HT) && ++this.#padding <= MAX_PADDING) {
      return pos + 1;
    }
    if (this.#state === "padding" && c === CR) {
      this.#state = "padding_lf";
      return pos + 1;
    }
    if (this.#state === "padding_lf" && c === LF) {
      this.#startPart();
      return pos + 1;
    }
    throw new MultipartError(
      "bad_boundary_line",
      "Malformed multipart body: a boundary line goes on with other text",
    );
  }

  #startPart(): void {
    if (++this.#parts > this.#maxParts) {
      throw new MultipartError(
        "too_many_parts",
        `Multipart body has more than ${this.#maxParts} parts`,
      );
    }
    this.#state = "headers";
    this.#headBytes = 0;
    // The boundary line's CRLF counts, so a part without headers ends its section at once.
    this.#headMatch = 2;
  }

  /** A part's header section, up to and including its blank line. */
  #headers(buf: Uint8Array, pos: number, events: MultipartEvent[]): number {
    let m = this.#headMatch;
    let end = pos;
    while (end < buf.length && m < 4) {
      const c = buf[end++];
      m = c === HEADER_END[m] ? m + 1 : c === CR ? 1 : 0;
    }
    if (this.#headBytes + end - pos > this.#maxHeaderBytes) {
      throw new MultipartError(
        "headers_too_large",
        `Multipart part headers exceed ${this.#maxHeaderBytes} bytes`,
      );
    }
    // A copy: the caller may reuse its chunk.
    if (this.#head.length === 0) this.#head = new Uint8Array(this.#maxHeaderBytes);
    this.#head.set(buf.subarray(pos, end), this.#headBytes);
    this.#headBytes += end - pos;
    this.#headMatch = m;
    if (m < 4) return end;
    const text = new TextDecoder().decode(this.#head.subarray(0, this.#headBytes));
    events.push({ kind: "headers", part: parsePartHeaders(text) });
    this.#state = "data";
    return end;
  }
}

/** The name and filename of a part's header section (ending in a blank line). */
function parsePartHeaders(text: string): PartHeaders {
  let disposition: string | undefined;
  for (const line of text.split("\r\n")) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new MultipartError(
        "bad_header",
        `Malformed multipart body: part header line "${line.slice(0, 40)}" has no colon`,
      );
    }
    if (line.slice(0, colon).trim().toLowerCase() === "content-disposition") {
      disposition ??= line.slice(colon + 1).trim();
    }
  }
  // Browsers escape a filename's quote as %22 and leave a backslash as it
  // is (WHATWG), so a quoted value here runs to the next quote: no escapes.
  const parsed = parseHeaderValue(disposition ?? "", false);
  if (parsed?.type !== "form-data") {
    throw new MultipartError(
      "bad_header",
      'Malformed multipart body: a part has no "Content-Disposition: form-data" header',
    );
  }
  const name = parsed.params.get("name");
  if (name === undefined) {
    throw new MultipartError("bad_header", "Malformed multipart body: a part has no name");
  }
  return { name, filename: parsed.params.get("filename") ?? parsed.params.get("filename*") };
}

/**
 * A header value's lower-case leading token and its `; key=value`
 * parameters (keys lower-case, first one wins, values quoted or not; in a
 * quoted one a backslash escapes the next character when `escapes`).
 * Undefined when a quoted value is not closed.
 */
function parseHeaderValue(
  value: string,
  escapes = true,
): { type: string; params: Map<string, string> } | undefined {
  const params = new Map<string, string>();
  let i = value.indexOf(";");
  const type = (i < 0 ? value : value.slice(0, i)).trim().toLowerCase();
  while (i >= 0 && i < value.length) {
    // `i` is at a ';'.
    const eq = value.indexOf("=", i + 1);
    const semi = value.indexOf(";", i + 1);
    if (eq < 0 || (semi >= 0 && semi < eq)) {
      i = semi;
      continue;
    }
    const key = value.slice(i + 1, eq).trim().toLowerCase();
    let j = eq + 1;
    while (value[j] === " " || value[j] === "\t") j++;
    let v = "";
    if (value[j] === '"') {
      for (j++;; j++) {
        if (j >= value.length) return undefined;
        const c = value[j];
        if (c === '"') break;
        if (escapes && c === "\\" && j + 1 < value.length) j++;
        v += value[j];
      }
      i = value.indexOf(";", j + 1);
    } else {
      i = value.indexOf(";", j);
      v = (i < 0 ? value.slice(j) : value.slice(j, i)).trim();
    }
    if (!params.has(key)) params.set(key, v);
  }
  return { type, params };
}

/** Where `needle` first starts in `haystack` at or after `from`, or -1. */
function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  const last = haystack.length - needle.length;
  for (
    let i = haystack.indexOf(first!, from);
    i >= 0 && i <= last;
    i = haystack.indexOf(first!, i + 1)
  ) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** The first index at or after `from` where the rest of `buf` begins `needle`, else its length. */
function prefixStart(buf: Uint8Array, from: number, needle: Uint8Array): number {
  for (let i = from; i < buf.length; i++) {
    let j = 0;
    while (i + j < buf.length && buf[i + j] === needle[j]) j++;
    if (i + j === buf.length) return i;
  }
  return buf.length;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
