/**
 * The response envelopes of the original system: `{code:0,msg,data}`,
 * `{code:-1,msg}` and `{code:0,msg:"",rows,total}`. Pure; the HTTP status
 * (set by the caller) carries the class of error, the body is always one of
 * these.
 *
 * @module
 */

/** A success envelope; `data` is absent when there is nothing to return. */
export interface OkEnvelope<T> {
  readonly code: 0;
  readonly msg: string;
  readonly data?: T;
}

/** A failure envelope; `msg` is safe to show to the user. */
export interface FailEnvelope {
  readonly code: -1;
  readonly msg: string;
}

/** A list envelope; an empty list is `rows: []`, `total: 0`. */
export interface ListEnvelope<T> {
  readonly code: 0;
  readonly msg: string;
  readonly rows: readonly T[];
  readonly total: number;
}

/** `{code:0,msg,data}`, without a `data` key when `data` is undefined. */
export function ok<T>(data?: T, msg = ""): OkEnvelope<T> {
  return data === undefined ? { code: 0, msg } : { code: 0, msg, data };
}

/** `{code:-1,msg}`. */
export function fail(msg: string): FailEnvelope {
  return { code: -1, msg };
}

/** `{code:0,msg:"",rows,total}`; `total` defaults to the number of rows. */
export function list<T>(rows: readonly T[], total = rows.length): ListEnvelope<T> {
  return { code: 0, msg: "", rows, total };
}
