/**
 * Field readers for `protocol.ts`'s parser and the error they throw. Pure.
 *
 * @module
 */

import { ClientError } from "./errors.ts";

/** A frame the parser refused; `field` names the culprit when there is one. */
export class FrameError extends ClientError {
  /** The offending field, or undefined for whole-frame problems. */
  readonly field: string | undefined;
  /**
   * The refused chat frame's own `cid`, when it had a valid one: the error
   * frame carries it, so the client knows which message was refused.
   */
  readonly cid: string | undefined;

  /** Build a frame error; `message` is sentence case, no final period. */
  constructor(
    message: string,
    options: {
      field?: string | undefined;
      code?: "bad_request" | "too_large";
      cid?: string | undefined;
    } = {},
  ) {
    super(options.code ?? "bad_request", message);
    this.name = "FrameError";
    this.field = options.field;
    this.cid = options.cid;
  }
}

const CID = /^[A-Za-z0-9_.:-]+$/;

/** An optional integer field (absent or null → undefined); old clients may send digit strings. */
export function int(
  obj: Record<string, unknown>,
  name: string,
  range: { min: number; max?: number },
): number | undefined {
  const v = obj[name];
  if (v === undefined || v === null) return undefined;
  const n = typeof v === "string" && /^[0-9]{1,15}$/.test(v) ? Number(v) : v;
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  if (
    typeof n !== "number" || !Number.isSafeInteger(n) || n < range.min ||
    n > max
  ) {
    throw new FrameError(
      `Field "${name}" must be an integer from ${range.min} to ${max}`,
      { field: name },
    );
  }
  return n;
}

/**
 * An optional string field of at most `max` characters; absent → "".
 * Refuses NUL (Postgres cannot store it, so a store would fail on it alone)
 * and unpaired surrogates (no UTF-8 for them: the store would keep U+FFFD
 * while live receivers got the original).
 */
export function str(obj: Record<string, unknown>, name: string, max: number): string {
  const v = obj[name];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") {
    throw new FrameError(`Field "${name}" must be a string`, { field: name });
  }
  if (v.length > max) {
    throw new FrameError(`Field "${name}" exceeds ${max} characters`, {
      field: name,
    });
  }
  if (v.includes("\u0000")) {
    throw new FrameError(`Field "${name}" may not contain NUL (U+0000)`, { field: name });
  }
  if (!v.isWellFormed()) {
    throw new FrameError(
      `Field "${name}" holds an unpaired UTF-16 surrogate: not valid Unicode text`,
      { field: name },
    );
  }
  return v;
}

/**
 * `obj`'s `cid` when it is a valid one (as {@linkcode cidField} reads it),
 * else undefined. Never throws: for the error frame of a refused chat frame.
 */
export function validCid(obj: Record<string, unknown>, max: number): string | undefined {
  const v = obj["cid"];
  return typeof v === "string" && v.length <= max && CID.test(v) ? v : undefined;
}

/** An optional id field (`cid`, `rid`): letters, digits and `_ . : -`. */
export function cidField(
  obj: Record<string, unknown>,
  name: string,
  max: number,
): string {
  const v = str(obj, name, max);
  if (v !== "" && !CID.test(v)) {
    throw new FrameError(
      `Field "${name}" may hold only letters, digits and _ . : -`,
      { field: name },
    );
  }
  return v;
}
