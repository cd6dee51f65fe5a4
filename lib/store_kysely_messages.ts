/**
 * The message half of the Kysely store: append one message with a gap-free
 * per-conversation seq and (userid, cid) dedup, paging, and catch-up seqs.
 * Batches (group commit) are in `_store_kysely_batch.ts`.
 *
 * @module
 */

import { sql } from "kysely";
import { conversationKey, newMessageFields } from "./store.ts";
import type { AppendResult, NewMessage, StoredMessage } from "./store.ts";
import { isUniqueViolation, type StoreDb, toMessage } from "./_store_kysely_rows.ts";

/**
 * Store `message` with the next seq of its conversation. The seq comes from
 * an upsert on `conversations` in the same transaction as the insert, so a
 * rolled-back insert never leaves a gap. A repeat (userid, cid) returns the
 * first message with `duplicate: true`, also when two repeats race.
 */
export async function appendMessage(
  store: StoreDb,
  message: NewMessage,
  now: number,
): Promise<AppendResult> {
  const { db } = store;
  const conv = conversationKey(message.cmd, message.userid, message.dstid);
  const group = message.cmd === 11;
  const lo = Math.min(message.userid, message.dstid);
  const hi = Math.max(message.userid, message.dstid);
  try {
    return await db.transaction().execute(async (trx) => {
      const first = await findByCid(store, message.userid, message.cid, trx);
      if (first !== undefined) return { message: first, duplicate: true };
      const { last_seq: seq } = await trx.insertInto("conversations")
        .values({
          conv,
          last_seq: 1,
          user_lo: group ? null : lo,
          user_hi: group ? null : hi,
          group_id: group ? message.dstid : null,
        })
        .onConflict((oc) =>
          oc.column("conv").doUpdateSet({
            last_seq: sql<number>`conversations.last_seq + 1`,
          })
        )
        .returning("last_seq")
        .executeTakeFirstOrThrow();
      const row = await trx.insertInto("messages")
        .values({ ...newMessageFields(message), conv, seq: Number(seq), ts: now })
        .returningAll()
        .executeTakeFirstOrThrow();
      return { message: toMessage(row), duplicate: false };
    });
  } catch (error) {
    // Two first sends of one cid raced; the loser's transaction rolled back.
    if (!isUniqueViolation(error)) throw error;
    const first = await findByCid(store, message.userid, message.cid);
    if (first === undefined) throw error;
    return { message: first, duplicate: true };
  }
}

async function findByCid(
  store: StoreDb,
  userid: number,
  cid: string,
  db = store.db,
): Promise<StoredMessage | undefined> {
  const row = await db.selectFrom("messages").selectAll()
    .where("userid", "=", userid).where("cid", "=", cid)
    .executeTakeFirst();
  return row === undefined ? undefined : toMessage(row);
}

/** Messages of `conv` after or before a seq, ascending, at most `limit`. */
export async function listMessages(
  store: StoreDb,
  conv: string,
  options: { afterSeq?: number; beforeSeq?: number; limit: number },
): Promise<StoredMessage[]> {
  const limit = Math.max(0, Math.floor(options.limit));
  if (limit === 0) return [];
  let query = store.db.selectFrom("messages").selectAll()
    .where("conv", "=", conv);
  if (options.afterSeq !== undefined) {
    query = query.where("seq", ">", options.afterSeq);
  }
  if (options.beforeSeq !== undefined) {
    const rows = await query.where("seq", "<", options.beforeSeq)
      .orderBy("seq", "desc").limit(limit).execute();
    return rows.reverse().map(toMessage);
  }
  const rows = await query.orderBy("seq", "asc").limit(limit).execute();
  return rows.map(toMessage);
}

/** The last seq of every 1:1 conversation and group `userId` takes part in. */
export async function lastSeqs(
  store: StoreDb,
  userId: number,
): Promise<Map<string, number>> {
  const build = () =>
    store.db.selectFrom("conversations")
      .select(["conv", "last_seq"])
      .where((eb) =>
        eb.or([
          eb("user_lo", "=", userId),
          eb("user_hi", "=", userId),
          eb(
            "group_id",
            "in",
            eb.selectFrom("memberships").select("group_id")
              .where("user_id", "=", userId),
          ),
        ])
      );
  const rows = store.reused === undefined
    ? await build().execute()
    : await store.reused.rows(store.db, "lastSeqs", build, [userId, userId, userId]);
  return new Map(rows.map((r) => [r.conv, Number(r.last_seq)]));
}

/** See {@linkcode MessageStore.recentHeads}: a descending scan of the primary key, `limit` rows at most. */
export async function recentHeads(
  store: StoreDb,
  sinceTs: number,
  limit: number,
): Promise<{ conv: string; seq: number }[]> {
  const recent = store.db.selectFrom("messages")
    .select(["conv", "seq", "ts"])
    .orderBy("id", "desc")
    .limit(Math.max(0, Math.floor(limit)))
    .as("recent");
  const rows = await store.db.selectFrom(recent)
    .select((eb) => ["conv", eb.fn.max("seq").as("seq")])
    .where("ts", ">=", sinceTs)
    .groupBy("conv")
    .execute();
  return rows.map((r) => ({ conv: r.conv, seq: Number(r.seq) }));
}
