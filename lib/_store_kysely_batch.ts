/**
 * Group commit on the Kysely store: a batch of appends in one transaction
 * (the statements are in `_batch_sql.ts`), with a per-item fallback.
 *
 * @module
 */

import { CompiledQuery } from "kysely";
import type { AppendOutcome, AppendRequest } from "./store.ts";
import type { StoreDb } from "./_store_kysely_rows.ts";
import { isItemError, lookupOnDemand, writeBatch } from "./_batch_sql.ts";
import { appendMessage } from "./store_kysely_messages.ts";

/**
 * Store a batch in one transaction: one seq upsert for all its
 * conversations (each gets a block of `n` seqs, handed out in call order)
 * and one multi-row insert; if a cid was stored already, the batch is
 * written again with a dedup lookup first (`lookupOnDemand`). If the transaction fails on a constraint
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
    const results = await lookupOnDemand((options) =>
      store.db.transaction().execute((trx) =>
        writeBatch(
          async <R>(sql: string, params: unknown[]) =>
            (await trx.executeQuery<R>(CompiledQuery.raw(sql, params))).rows,
          store.dialect,
          batch,
          options,
        )
      )
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
