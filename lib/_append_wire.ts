/**
 * The messages between the main thread and the SQLite append worker
 * (`_sqlite_append_worker.ts`, `store_append_worker.ts`), and their codec:
 * a batch crosses as flat primitives, new rows come back as id + seq, errors
 * as plain fields. Both threads load this file, so its runtime imports stay
 * within `lib/` and never reach Kysely.
 *
 * @module
 */

import { conversationKey, newMessageValues } from "./store.ts";
import type { AppendOutcome, AppendRequest, AppendResult } from "./store.ts";
import { storedMessage } from "./_batch_sql.ts";

/** An error that crossed the thread boundary as plain fields. */
export interface WireError {
  readonly name: string;
  readonly message: string;
  /** Postgres-style SQLSTATE or a Node-style code, when the error had one. */
  readonly code?: string;
  /** SQLite's extended result code, when the error had one. */
  readonly errcode?: number;
}

/** One item's outcome as it crosses the thread boundary. */
export type WireOutcome =
  | { readonly ok: true; readonly result: AppendResult }
  | { readonly ok: false; readonly error: WireError };

/**
 * A batch as it crosses to the worker: {@linkcode WIRE_FIELDS} primitives
 * per item, so the copy carries no property names (see {@linkcode encodeBatch}).
 */
export type WireBatch = readonly (string | number)[];

/** The outcomes of a batch as they cross back. */
export interface WireOutcomes {
  /**
   * Two numbers per item: the id and seq of the row it stored, or NaN for an
   * item in `others`. Everything else of a new row is what the main side sent.
   */
  readonly fresh: Float64Array<ArrayBuffer>;
  /** The items that stored no row (duplicates, failures), by index. */
  readonly others: readonly (readonly [number, WireOutcome])[];
}

/** What the main side asks of the worker. */
export type WorkerRequest =
  | {
    readonly kind: "open";
    readonly path: string;
    readonly busyTimeoutMs: number;
    /** The WAL flusher's interval (`_wal_flusher.ts`), ms; 0 turns it off. */
    readonly walSyncMs: number;
    /** Answer a batch once its commit is synced to disk. */
    readonly durable: boolean;
  }
  | { readonly kind: "batch"; readonly id: number; readonly batch: WireBatch }
  | { readonly kind: "close" };

/** What the worker answers. `failed` with id 0 answers `open`; `warning` is for the log. */
export type WorkerReply =
  | { readonly kind: "opened" }
  | { readonly kind: "warning"; readonly message: string }
  | { readonly kind: "done"; readonly id: number; readonly outcomes: WireOutcomes }
  | { readonly kind: "failed"; readonly id: number; readonly error: WireError }
  /** Durable acks: a WAL sync failed; no later append may be acked (on either thread). */
  | { readonly kind: "syncFailed"; readonly error: WireError }
  | { readonly kind: "closed" };

/** Values per item in a {@linkcode WireBatch}. */
export const WIRE_FIELDS = 11;

/**
 * Flatten a batch for `postMessage`. Why: the structured clone of an object
 * writes every property name again, and a batch is many small objects of
 * one shape; the main thread pays for the copy on every batch.
 */
export function encodeBatch(batch: readonly AppendRequest[]): WireBatch {
  const out: (string | number)[] = [];
  for (const { message, now } of batch) out.push(...newMessageValues(message), now);
  return out;
}

/** Rebuild the requests of {@linkcode encodeBatch}; throws on a malformed batch. */
export function decodeBatch(wire: WireBatch): AppendRequest[] {
  if (wire.length % WIRE_FIELDS !== 0) {
    throw new RangeError(
      `A wire batch has ${wire.length} values, not a multiple of ${WIRE_FIELDS}`,
    );
  }
  const num = (k: number) => {
    const v = wire[k];
    if (typeof v !== "number") throw new TypeError(`Wire batch value ${k} is not a number`);
    return v;
  };
  const str = (k: number) => {
    const v = wire[k];
    if (typeof v !== "string") throw new TypeError(`Wire batch value ${k} is not a string`);
    return v;
  };
  const batch: AppendRequest[] = [];
  for (let k = 0; k < wire.length; k += WIRE_FIELDS) {
    batch.push({
      message: {
        userid: num(k),
        cmd: num(k + 1),
        dstid: num(k + 2),
        media: num(k + 3),
        content: str(k + 4),
        pic: str(k + 5),
        url: str(k + 6),
        memo: str(k + 7),
        amount: num(k + 8),
        cid: str(k + 9),
      },
      now: num(k + 10),
    });
  }
  return batch;
}

/** The outcomes of a batch for `postMessage`: new rows as two numbers each. */
export function encodeOutcomes(outcomes: readonly AppendOutcome[]): WireOutcomes {
  const fresh = new Float64Array(outcomes.length * 2).fill(NaN);
  const others: [number, WireOutcome][] = [];
  outcomes.forEach((o, i) => {
    if (o.ok && !o.result.duplicate) {
      fresh[2 * i] = o.result.message.id;
      fresh[2 * i + 1] = o.result.message.seq;
    } else {
      others.push([i, o.ok ? o : { ok: false, error: toWire(o.error) }]);
    }
  });
  return { fresh, others };
}

/** Rebuild the outcomes of `batch` (as sent) from {@linkcode encodeOutcomes}. */
export function decodeOutcomes(
  wire: WireOutcomes,
  batch: readonly AppendRequest[],
): AppendOutcome[] {
  const others = new Map(wire.others);
  return batch.map(({ message, now }, i) => {
    const other = others.get(i);
    if (other !== undefined) return other.ok ? other : { ok: false, error: fromWire(other.error) };
    const id = wire.fresh[2 * i];
    const seq = wire.fresh[2 * i + 1];
    if (id === undefined || seq === undefined || Number.isNaN(id) || Number.isNaN(seq)) {
      return {
        ok: false,
        error: new RangeError(`The append worker returned no outcome for item ${i}`),
      };
    }
    const conv = conversationKey(message.cmd, message.userid, message.dstid);
    return {
      ok: true,
      result: { message: storedMessage(message, { id, conv, seq, ts: now }), duplicate: false },
    };
  });
}

/** An error as plain fields: the name, message and the codes the store's checks read. */
export function toWire(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: "Error", message: String(error) };
  const { code, errcode } = error as { code?: unknown; errcode?: unknown };
  return {
    name: error.name,
    message: error.message,
    ...(typeof code === "string" ? { code } : {}),
    ...(typeof errcode === "number" ? { errcode } : {}),
  };
}

/** Rebuild an error from its wire fields (the store's checks read message, code and errcode). */
export function fromWire(wire: WireError): Error {
  const error = new Error(wire.message);
  error.name = wire.name;
  return Object.assign(
    error,
    wire.code === undefined ? {} : { code: wire.code },
    wire.errcode === undefined ? {} : { errcode: wire.errcode },
  );
}
