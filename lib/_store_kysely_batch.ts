/**
 * Group commit on the Kysely store: a batch of appends in one transaction
 * with three statements whatever its size (dedup lookup, seq reservation,
 * multi-row insert). The statements are written here as SQL text and run as
 * Kysely `CompiledQuery`s: Kysely's builder and compiler cost more than the
 * SQLite work for these wide multi-row statements, and the SQL is the same
 * on both engines except for the placeholders.
 *
 * @module
 */

import { CompiledQuery, type Selectable, type Transaction } from "kysely";
import { conversationKey } from "./store.ts";
import type {
  AppendOutcome,
  AppendRequest,
  AppendResult,
  NewMessage,
  StoredMessage,
} from "./store.ts";
import type { Database, MessagesTable, SqlDialectKind } from "./migrations.ts";
import {
  isForeignKeyViolation,
  isUniqueViolation,
  type StoreDb,
  toMessage,
} from "./_store_kysely_rows.ts";
import { appendMessage } from "./store_kysely_messages.ts";

/**
 * Store a batch in one transaction: one dedup lookup, one seq upsert for
 * all its conversations (each gets a block of `n` seqs, handed out in call
 * order) and one multi-row insert. If the transaction fails on a constraint
 * or a lock conflict (another node raced a cid, a deadlock, a value one
 * item brought), each item is retried in its own transaction so only the
 * item at fault fails; any other error (the store is down) fails the whole
 * batch.
 */
export async function appendMessages(
  store: StoreDb,
  batch: readonly AppendRequest[],
): Promise<AppendOutcome[]> {
  if (batch.length === 0) return [];
  try {
    const results = await store.db.transaction().execute((trx) =>
      writeBatch(trx, store.dialect, batch)
    );
    return results.map((result) => ({ ok: true, result }));
  } catch (error) {
    if (!isItemError(error)) throw error;
  }
  const outcomes: AppendOutcome[] = [];
  for (const { message, now } of batch) {
    try {
      outcomes.push({ ok: true, result: await appendMessage(store, message, now) });
    } catch (error) {
      outcomes.push({ ok: false, error });
    }
  }
  return outcomes;
}

/** Errors one item can cause, or a race another transaction won: worth retrying per item. */
function isItemError(error: unknown): boolean {
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
}

/** What a batch item turns into: a row stored before, an earlier item's twin, or a new row. */
type Step =
  | { readonly kind: "stored"; readonly message: StoredMessage }
  | { readonly kind: "twin"; readonly of: number }
  | { readonly kind: "new"; readonly conv: string; readonly nth: number };

async function writeBatch(
  trx: Transaction<Database>,
  dialect: SqlDialectKind,
  batch: readonly AppendRequest[],
): Promise<AppendResult[]> {
  const existing = await findByCids(trx, dialect, batch.map((r) => r.message));
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
  const last = await reserveSeqs(trx, dialect, counts);
  const seqOf = (conv: string, nth: number) =>
    (last.get(conv) ?? NaN) - (counts.get(conv)?.n ?? NaN) + nth;
  const p = new Params(dialect);
  const tuples: string[] = [];
  for (const [i, step] of steps.entries()) {
    const request = batch[i];
    if (step.kind !== "new" || request === undefined) continue;
    const m = request.message;
    const row = [
      step.conv,
      seqOf(step.conv, step.nth),
      m.userid,
      m.cmd,
      m.dstid,
      m.media,
      m.content,
      m.pic,
      m.url,
      m.memo,
      m.amount,
      m.cid,
      request.now,
    ];
    tuples.push(`(${row.map((v) => p.add(v)).join(", ")})`);
  }
  const { rows } = await trx.executeQuery<Selectable<MessagesTable>>(CompiledQuery.raw(
    `insert into "messages" ("conv", "seq", "userid", "cmd", "dstid", "media", "content", ` +
      `"pic", "url", "memo", "amount", "cid", "ts") values ${tuples.join(", ")} returning *`,
    p.values,
  ));
  const inserted = new Map(rows.map((row) => {
    const m = toMessage(row);
    return [`${m.conv}#${m.seq}`, m];
  }));
  const results: AppendResult[] = [];
  for (const step of steps) {
    if (step.kind !== "new") {
      results.push(resultOf(step, results));
      continue;
    }
    const seq = seqOf(step.conv, step.nth);
    const message = inserted.get(`${step.conv}#${seq}`);
    if (message === undefined) throw new Error(`Inserted row ${step.conv}#${seq} not returned`);
    results.push({ message, duplicate: false });
  }
  return results;
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
  trx: Transaction<Database>,
  dialect: SqlDialectKind,
  counts: ReadonlyMap<string, { n: number; message: NewMessage }>,
): Promise<Map<string, number>> {
  const p = new Params(dialect);
  const tuples = [...counts].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([conv, { n, message }]) => {
      const group = message.cmd === 11;
      const lo = group ? null : Math.min(message.userid, message.dstid);
      const hi = group ? null : Math.max(message.userid, message.dstid);
      const row = [conv, n, lo, hi, group ? message.dstid : null];
      return `(${row.map((v) => p.add(v)).join(", ")})`;
    });
  const { rows } = await trx.executeQuery<{ conv: string; last_seq: number }>(CompiledQuery.raw(
    `insert into "conversations" ("conv", "last_seq", "user_lo", "user_hi", "group_id") ` +
      `values ${tuples.join(", ")} on conflict ("conv") do update set ` +
      `"last_seq" = "conversations"."last_seq" + excluded."last_seq" ` +
      `returning "conv", "last_seq"`,
    p.values,
  ));
  return new Map(rows.map((r) => [r.conv, Number(r.last_seq)]));
}

/**
 * The stored rows of `messages`' (userid, cid) pairs, by cid key, in one
 * query: an OR of exact pairs, so both engines probe the unique index once
 * per pair (`userid IN … AND cid IN …` would probe every combination).
 */
async function findByCids(
  trx: Transaction<Database>,
  dialect: SqlDialectKind,
  messages: readonly NewMessage[],
): Promise<Map<string, StoredMessage>> {
  const pairs = new Map(messages.map((m) => [cidKey(m.userid, m.cid), m]));
  const p = new Params(dialect);
  const terms = [...pairs.values()].map((m) =>
    `("userid" = ${p.add(m.userid)} and "cid" = ${p.add(m.cid)})`
  );
  const { rows } = await trx.executeQuery<Selectable<MessagesTable>>(CompiledQuery.raw(
    `select * from "messages" where ${terms.join(" or ")}`,
    p.values,
  ));
  return new Map(rows.map((row) => {
    const m = toMessage(row);
    return [cidKey(m.userid, m.cid), m];
  }));
}
