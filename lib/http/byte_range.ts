/**
 * The `Range` header of a download (RFC 9110 §14.2), for `/mnt/<name>`:
 * Safari and iOS play `<video>` and `<audio>` only from a server that answers
 * byte ranges, and the original system's `http.FileServer` did. Pure.
 *
 * @module
 */

/** Bytes `start` to `end` of a file, both included. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * The one range `header` asks of a file of `size` bytes: a {@linkcode ByteRange},
 * `"unsatisfiable"` (416: it starts past the end), or undefined when the
 * whole file should be sent (no header, another unit, several ranges, or a
 * header that does not parse: a server may ignore those).
 */
export function parseRange(
  header: string | null,
  size: number,
): ByteRange | "unsatisfiable" | undefined {
  if (header === null) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (m === null) return undefined;
  const [, first = "", last = ""] = m;
  if (first === "" && last === "") return undefined;
  if (first === "") {
    // A suffix: the last N bytes.
    const n = Number(last);
    if (!Number.isSafeInteger(n)) return undefined;
    if (n === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  if (!Number.isSafeInteger(start)) return undefined;
  const end = last === "" ? Infinity : Number(last);
  if (last !== "" && (!Number.isSafeInteger(end) || end < start)) return undefined;
  if (start >= size) return "unsatisfiable";
  return { start, end: Math.min(end, size - 1) };
}
