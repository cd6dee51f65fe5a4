/**
 * The SQL of one group-commit batch (see `store_batch.ts`): one seq upsert
 * for all its conversations and one multi-row insert, and a dedup lookup
 * before them where a batch needs one: at most three statements whatever
 * the batch size, written as SQL text for both engines.
 * It runs them through a {@linkcode BatchQuery}, so the same code serves the
 * Kysely store (inside a Kysely transaction) and the SQLite append worker
 * (`_sqlite_append_worker.ts`, straight on `node:sqlite`). No runtime import
 * here may pull in Kysely: the worker loads this file under the server's
 * narrow read permission.
 *
 * @module
 */

import type { Selectable } from "kysely";
import { conversationKey, newMessageFields, newMessageValues } from "./store.ts";
import type { AppendRequest, AppendResult, NewMessage, StoredMessage } from "./store.ts";
import type { MessagesTable, SqlDialectKind } from "./migrations.ts";
import { isForeignKeyViolation, isUniqueViolation, toMessage } from "./_store_kysely_rows.ts";

/** Runs one statement with bound values inside the caller's transaction; resolves with its rows. */
export type BatchQuery = <R>(sql: string, params: unknown[]) => Promise<R[]>;

/** Options of {@linkcode writeBatch}. */
export interface WriteBatchOptions {
  /**
   * Skip the lookup of stored cids: the insert skips a row whose cid is
   * stored, and {@linkcode StoredCidFound} is thrown, so the caller rolls
   * back and writes the batch again without this option. The lookup probes
   * the `(userid, cid)` index once more per message than the insert's own
   * unique check; a resent message is rare. @default {false}
   */
  readonly assumeNew?: boolean;
}

/**
 * A batch written with `assumeNew` met a cid stored before it: roll the
 * transaction back and write the batch again with the lookup.
 */
export class StoredCidFound extends Error {
  /** An error for a batch that needs its lookup. */
  constructor() {
    super("A message of the batch is stored already");
    this.name = "StoredCidFound";
  }
}

/**
 * Run `attempt` (one transaction around {@linkcode writeBatch}) with
 * `assumeNew`, and once more without it if the batch met a stored cid.
 */
export async function lookupOnDemand<T>(
  attempt: (options: WriteBatchOptions) => Promise<T>,
): Promise<T> {
  try {
    return await attempt({ assumeNew: true });
  } catch (error) {
    if (!(error instanceof StoredCidFound)) throw error;
    return await attempt({ assumeNew: false });
  }
}

/** Errors one item can cause, or a race another transaction won: worth retrying per item. */
export function isItemError(error: unknown): boolean {
  if (isUniqueViolation(error) || isForeignKeyViolation(error)) return true;
  if (typeof error !== "object" || error === null) return false;
  const { code, errcode } = error as { code?: unknown; errcode?: unknown };
  // SQLite: any SQLITE_CONSTRAINT (19) variant, e.g. a CHECK or a trigger's RAISE.
  if (typeof errcode === "number" && (errcode & 0xff) === 19) return true;
  // Postgres: serialization failure, deadlock, integrity violations, bad values.
  return typeof code === "string" && /^(40001|40P01|23\d{3}|22\d{3})$/.test(code);
}

function cidKey(userid: number, cid: string): string {
  return `${userid}\u0000${cid}`;
}

/**
 * `insert into`, as SQLite's `insert or fail into`. A failed statement of a
 * batch aborts its whole transaction anyway (the caller rolls back, then
 * writes item by item), so SQLite need not undo just that statement: with
 * the default `abort` it keeps a statement journal, a copy of every page a
 * multi-row insert touches, spilled to a temp file opened and unlinked per
 * statement. Measured on the append pattern (node:sqlite, 300,000 rows,
 * batches of 30): 47 - 55 µs of CPU per message before, 30 - 34 after.
 */
function insertInto(dialect: SqlDialectKind): string {
  return dialect === "sqlite" ? "insert or fail into" : "insert into";
}

/** Collects bound values and hands out the dialect's placeholder for each. */
class Params {
  readonly values: unknown[] = [];
  #pg: boolean;

  constructor(dialect: SqlDialectKind) {
    this.#pg = dialect === "postgres";
  }

  add(value: unknown): string {
    this.values.push(value);
    return this.#pg ? `$${this.values.length}` : "?";
  }

  /** Bind `row`'s values in order; returns their parenthesised placeholder list. */
  tuple(row: readonly unknown[]): string {
    const values = this.values;
    const first = values.length + 1;
    for (const value of row) values.push(value);
    // SQLite's list depends on the width only: no string per value.
    if (!this.#pg) return `(${"?, ".repeat(row.length - 1)}?)`;
    let text = `($${first}`;
    for (let k = first + 1; k <= values.length; k++) text += `, $${k}`;
    return `${text})`;
  }
}

/** What a batch item turns into: a row stored before, an earlier item's twin, or a new row. */
type Step =
  | { readonly kind: "stored"; readonly message: StoredMessage }
  | { readonly kind: "twin"; readonly of: number }
  | { readonly kind: "new"; readonly conv: string; readonly nth: number };

/**
 * Write `batch` with `query`, inside a transaction the caller opened and
 * commits: items whose (userid, cid) is stored already, or repeats an
 * earlier item, come back as duplicates; the rest get consecutive seqs of
 * their conversation in batch order. With `assumeNew`, a stored cid throws
 * {@linkcode StoredCidFound} instead (see {@linkcode WriteBatchOptions}).
 */
export async function writeBatch(
  query: BatchQuery,
  dialect: SqlDialectKind,
  batch: readonly AppendRequest[],
  options: WriteBatchOptions = {},
): Promise<AppendResult[]> {
  const assumeNew = options.assumeNew ?? false;
  const existing = assumeNew
    ? new Map<string, StoredMessage>()
    : await findByCids(query, dialect, batch.map((r) => r.message));
  const firstOf = new Map<string, number>();
  const counts = new Map<string, { n: number; message: NewMessage }>();
  const steps: Step[] = [];
  for (const [i, { message }] of batch.entries()) {
    const key = cidKey(message.userid, message.cid);
    const stored = existing.get(key);
    const earlier = firstOf.get(key);
    if (stored !== undefined) {
      steps.push({ kind: "stored", message: stored });
    } else if (earlier !== undefined) {
      steps.push({ kind: "twin", of: earlier });
    } else {
      firstOf.set(key, i);
      const conv = conversationKey(message.cmd, message.userid, message.dstid);
      const count = counts.get(conv) ?? { n: 0, message };
      count.n++;
      counts.set(conv, count);
      steps.push({ kind: "new", conv, nth: count.n });
    }
  }
  if (counts.size === 0) return steps.map((step) => resultOf(step, []));
  // Each conversation's block of seqs ends at its new last seq.
  const last = await reserveSeqs(query, dialect, counts);
  const seqOf = (conv: string, nth: number) =>
    (last.get(conv) ?? NaN) - (counts.get(conv)?.n ?? NaN) + nth;
  const p = new Params(dialect);
  const tuples: string[] = [];
  for (const [i, step] of steps.entries()) {
    const request = batch[i];
    if (step.kind !== "new" || request === undefined) continue;
    tuples.push(p.tuple([
      step.conv,
      seqOf(step.conv, step.nth),
      ...newMessageValues(request.message),
      request.now,
    ]));
  }
  // Only the ids come back: every other column is what this batch bound.
  const rows = await query<{ id: number | string; conv: string; seq: number | string }>(
    `${insertInto(dialect)} "messages" ("conv", "seq", "userid", "cmd", "dstid", "media", ` +
      `"content", "pic", "url", "memo", "amount", "cid", "ts") values ${tuples.join(", ")} ` +
      `${
        assumeNew ? 'on conflict ("userid", "cid") do nothing ' : ""
      }returning "id", "conv", "seq"`,
    p.values,
  );
  // A skipped row left its seq unused: the batch is written again, with the lookup.
  if (assumeNew && rows.length < tuples.length) throw new StoredCidFound();
  const ids = new Map(rows.map((row) => [`${row.conv}#${Number(row.seq)}`, Number(row.id)]));
  const results: AppendResult[] = [];
  for (const [i, step] of steps.entries()) {
    const request = batch[i];
    if (step.kind !== "new" || request === undefined) {
      results.push(resultOf(step, results));
      continue;
    }
    const seq = seqOf(step.conv, step.nth);
    const id = ids.get(`${step.conv}#${seq}`);
    if (id === undefined) throw new Error(`Inserted row ${step.conv}#${seq} not returned`);
    results.push({
      message: storedMessage(request.message, { id, conv: step.conv, seq, ts: request.now }),
      duplicate: false,
    });
  }
  return results;
}

/** The row an insert of `message` with these stamps stored, as the store returns it. */
export function storedMessage(
  message: NewMessage,
  stamps: { readonly id: number; readonly conv: string; readonly seq: number; readonly ts: number },
): StoredMessage {
  // One object, not two spreads: this runs for every message stored.
  return Object.assign(newMessageFields(message), stamps);
}

/** The result of a step that stored nothing, given the results before it. */
function resultOf(step: Step, before: readonly AppendResult[]): AppendResult {
  if (step.kind === "stored") return { message: step.message, duplicate: true };
  const first = step.kind === "twin" ? before[step.of] : undefined;
  if (first === undefined) throw new RangeError("Step has no earlier result");
  return { message: first.message, duplicate: true };
}

/**
 * Take `n` seqs for each conversation in one upsert; returns each one's new
 * last seq. Conversations go in key order so two nodes' batches lock the
 * rows in the same order and cannot deadlock each other (Postgres).
 */
async function reserveSeqs(
  query: BatchQuery,
  dialect: SqlDialectKind,
  counts: ReadonlyMap<string, { n: number; message: NewMessage }>,
): Promise<Map<string, number>> {
  const p = new Params(dialect);
  const tuples = [...counts].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([conv, { n, message }]) => {
      const group = message.cmd === 11;
      const lo = group ? null : Math.min(message.userid, message.dstid);
      const hi = group ? null : Math.max(message.userid, message.dstid);
      return p.tuple([conv, n, lo, hi, group ? message.dstid : null]);
    });
  const rows = await query<{ conv: string; last_seq: number }>(
    `${insertInto(dialect)} "conversations" ("conv", "last_seq", "user_lo", "user_hi", ` +
      `"group_id") values ${tuples.join(", ")} on conflict ("conv") do update set ` +
      `"last_seq" = "conversations"."last_seq" + excluded."last_seq" ` +
      `returning "conv", "last_seq"`,
    p.values,
  );
  return new Map(rows.map((r) => [r.conv, Number(r.last_seq)]));
}

/**
 * The stored rows of `messages`' (userid, cid) pairs, by cid key, in one
 * query: an OR of exact pairs, so both engines probe the unique index once
 * per pair (`userid IN … AND cid IN …` would probe every combination).
 */
async function findByCids(
  query: BatchQuery,
  dialect: SqlDialectKind,
  messages: readonly NewMessage[],
): Promise<Map<string, StoredMessage>> {
  const pairs = new Map(messages.map((m) => [cidKey(m.userid, m.cid), m]));
  const p = new Params(dialect);
  const terms = [...pairs.values()].map((m) =>
    `("userid" = ${p.add(m.userid)} and "cid" = ${p.add(m.cid)})`
  );
  const rows = await query<Selectable<MessagesTable>>(
    `select * from "messages" where ${terms.join(" or ")}`,
    p.values,
  );
  return new Map(rows.map((row) => {
    const m = toMessage(row);
    return [cidKey(m.userid, m.cid), m];
  }));
}
