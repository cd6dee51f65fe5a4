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

  /** Build a frame error; `message` is sentence case, no final period. */
  constructor(
    message: string,
    options: { field?: string; code?: "bad_request" | "too_large" } = {},
  ) {
    super(options.code ?? "bad_request", message);
    this.name = "FrameError";
    this.field = options.field;
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

/** An optional string field of at most `max` characters; absent → "". */
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
  return v;
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
