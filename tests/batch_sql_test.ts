/**
 * The batch SQL (`lib/_batch_sql.ts`) on a real SQLite file: with
 * `assumeNew` a batch of new cids takes two statements (no dedup lookup),
 * and a batch that meets a stored cid is rolled back and written again with
 * the lookup, its duplicates answered and its seqs gap-free.
 */

import { deepStrictEqual, rejects } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  type BatchQuery,
  lookupOnDemand,
  StoredCidFound,
  writeBatch,
  type WriteBatchOptions,
} from "../lib/_batch_sql.ts";
import { openKyselyStore } from "../lib/store_kysely.ts";
import type { AppendRequest, AppendResult } from "../lib/store.ts";
import { newMessage } from "./_store_samples.ts";

/** A migrated SQLite file on a plain connection, and every statement run on it. */
async function openBatchDb(): Promise<{ db: DatabaseSync; sqls: string[]; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_batch_sql_" });
  const path = join(dir, "chat.db");
  await (await openKyselyStore({ kind: "sqlite", path })).close();
  return { db: new DatabaseSync(path), sqls: [], dir };
}

function queryOn(db: DatabaseSync, sqls: string[]): BatchQuery {
  return <R>(sql: string, params: unknown[]) => {
    // The statement up to its table: which statements ran, in order.
    sqls.push(/^(select \* from|insert or fail into) "\w+"/.exec(sql)?.[0] ?? sql);
    return Promise.resolve(db.prepare(sql).all(...(params as (string | number)[])) as R[]);
  };
}

/** One transaction around writeBatch, rolled back when it throws. */
async function inTransaction(
  db: DatabaseSync,
  query: BatchQuery,
  batch: readonly AppendRequest[],
  options: WriteBatchOptions,
): Promise<AppendResult[]> {
  db.exec("BEGIN IMMEDIATE");
  try {
    const results = await writeBatch(query, "sqlite", batch, options);
    db.exec("COMMIT");
    return results;
  } catch (error) {
    db.exec("ROLLBACK");
    throw error;
  }
}

const A = 1;
const B = 2;
const req = (cid: string, now: number): AppendRequest => ({
  message: newMessage(A, { dstid: B, cid }),
  now,
});

Deno.test("a batch of new cids skips the dedup lookup; one that meets a stored cid is written again with it, gap-free", async () => {
  const { db, sqls, dir } = await openBatchDb();
  try {
    const query = queryOn(db, sqls);
    const write = (batch: AppendRequest[]) =>
      lookupOnDemand((options) => inTransaction(db, query, batch, options));

    const first = await write([req("x1", 1), req("x2", 2)]);
    deepStrictEqual(first.map((r) => [r.message.cid, r.message.seq, r.duplicate]), [
      ["x1", 1, false],
      ["x2", 2, false],
    ]);
    deepStrictEqual(sqls.splice(0), [
      'insert or fail into "conversations"',
      'insert or fail into "messages"',
    ]);

    // x1 again (a client's resend), between two new ones.
    const second = await write([req("x3", 3), req("x1", 4), req("x4", 5)]);
    deepStrictEqual(second.map((r) => [r.message.cid, r.message.seq, r.duplicate]), [
      ["x3", 3, false],
      ["x1", 1, true],
      ["x4", 4, false],
    ]);
    deepStrictEqual(second[1]?.message, first[0]?.message);
    deepStrictEqual(sqls.splice(0), [
      'insert or fail into "conversations"',
      'insert or fail into "messages"',
      'select * from "messages"',
      'insert or fail into "conversations"',
      'insert or fail into "messages"',
    ]);
    const rows = db.prepare('select "cid", "seq" from "messages" order by "seq"').all();
    deepStrictEqual(rows.map((r) => [r.cid, r.seq]), [["x1", 1], ["x2", 2], ["x3", 3], ["x4", 4]]);
    const conv = db.prepare('select "last_seq" from "conversations"').all();
    deepStrictEqual(conv.map((r) => r.last_seq), [4]);

    // Without lookupOnDemand the marker reaches the caller, and the rollback leaves nothing.
    await rejects(
      inTransaction(db, query, [req("x5", 6), req("x2", 7)], { assumeNew: true }),
      StoredCidFound,
    );
    deepStrictEqual(db.prepare('select count(*) as n from "messages"').get()?.n, 4);
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
