/**
 * The SQLite append worker (lib/store_append_worker.ts): batches written on
 * another thread come back as the same results and errors the main thread
 * would give, and every way the worker can fail leaves appends working on
 * the main thread, with nothing lost.
 */

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openKyselyStore } from "../lib/store_kysely.ts";
import {
  AppendWorker,
  type AppendWorkerOptions,
  INLINE_MAX_BATCH,
  INLINE_STREAK,
  INLINE_WINDOW_MS,
  SyncFailedError,
} from "../lib/store_append_worker.ts";
import { ClientError } from "../lib/errors.ts";
import {
  decodeBatch,
  decodeOutcomes,
  encodeBatch,
  encodeOutcomes,
  fromWire,
  toWire,
} from "../lib/_append_wire.ts";
import { isUniqueViolation } from "../lib/_store_kysely_rows.ts";
import type { AppendOutcome, PublicUser } from "../lib/store.ts";
import { APPEND_WORKER, newMessage, newUser, requests, twoUsers } from "./_store_samples.ts";
import { delay } from "./_chat_helpers.ts";

/**
 * A Kysely store with `options` on a new SQLite file, with users Ann and
 * Bob, for `body`; closed afterwards.
 */
async function withStore(
  options: Parameters<typeof openKyselyStore>[1],
  body: (
    store: Awaited<ReturnType<typeof openKyselyStore>>,
    ann: PublicUser,
    bob: PublicUser,
    path: string,
  ) => Promise<void>,
): Promise<void> {
  await using db = await tempDb();
  const store = await openKyselyStore({ kind: "sqlite", path: db.path }, options);
  try {
    const ann = await store.createUser(newUser("13800000001"), 1);
    const bob = await store.createUser(newUser("13800000002"), 1);
    await body(store, ann, bob, db.path);
  } finally {
    await store.close();
  }
}

const CRASHING_WORKER = new URL("./_crashing_append_worker.ts", import.meta.url);
const WARNING_WORKER = new URL("./_warning_append_worker.ts", import.meta.url);

async function tempDb(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_append_worker_" });
  return {
    path: join(dir, "chat.db"),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** The seqs of `outcomes`, all of which must be stored rows. */
function seqsOf(outcomes: readonly AppendOutcome[]): number[] {
  return outcomes.map((outcome) => {
    ok(outcome.ok);
    return outcome.result.message.seq;
  });
}

/** Messages stored in the SQLite file at `path`. */
function storedCount(path: string): number {
  const reader = new DatabaseSync(path);
  try {
    return (reader.prepare("select count(*) as n from messages").get() as { n: number }).n;
  } finally {
    reader.close();
  }
}

/**
 * Run `test` on a worker started with `options` on a new migrated file with
 * two users; close the worker after it. Returns the messages stored then.
 */
async function withWorker(
  options: AppendWorkerOptions,
  test: (worker: AppendWorker, ann: number, bob: number) => Promise<void>,
): Promise<number> {
  await using db = await tempDb();
  const [ann, bob] = await twoUsers(db.path);
  const worker = await AppendWorker.start(APPEND_WORKER, db.path, options);
  try {
    await test(worker, ann, bob);
  } finally {
    await worker.close();
  }
  return storedCount(db.path);
}

Deno.test("an SQLite error keeps its message and codes across the thread boundary", () => {
  const db = new DatabaseSync(":memory:");
  db.exec("create table t (x integer primary key)");
  db.exec("insert into t values (1)");
  let thrown: unknown;
  try {
    db.exec("insert into t values (1)");
  } catch (error) {
    thrown = error;
  } finally {
    db.close();
  }
  ok(isUniqueViolation(thrown));
  const back = fromWire(structuredClone(toWire(thrown)));
  ok(isUniqueViolation(back), back.message);
  strictEqual(back.message, (thrown as Error).message);
  strictEqual(
    (back as { errcode?: number }).errcode,
    (thrown as { errcode?: number }).errcode,
  );
  deepStrictEqual(fromWire(toWire("plain")).message, "plain");
});

Deno.test("a batch and its outcomes survive the flat wire format", () => {
  const batch = [
    { message: newMessage(7, { dstid: 8, cid: "a", content: "héllo \u0000 ✓" }), now: 11 },
    {
      message: { ...newMessage(7, { cmd: 11, dstid: 3, cid: "b" }), amount: 250, memo: "m" },
      now: 12,
    },
    { message: newMessage(8, { dstid: 7, cid: "c" }), now: 13 },
  ];
  const wire = structuredClone(encodeBatch(batch));
  deepStrictEqual(decodeBatch(wire), batch);
  throws(() => decodeBatch(wire.slice(1)), /not a multiple/);
  throws(() => decodeBatch([...wire.slice(0, -1), "13"]), /not a number/);

  const first = { ...batch[2]!.message, id: 1, conv: "u:7:8", seq: 1, ts: 5 };
  const outcomes = [
    {
      ok: true as const,
      result: {
        message: { ...batch[0]!.message, id: 9, conv: "u:7:8", seq: 2, ts: 11 },
        duplicate: false,
      },
    },
    { ok: false as const, error: Object.assign(new Error("boom"), { errcode: 19 }) },
    { ok: true as const, result: { message: first, duplicate: true } },
  ];
  const back = decodeOutcomes(structuredClone(encodeOutcomes(outcomes)), batch);
  deepStrictEqual(back[0], outcomes[0]);
  deepStrictEqual(back[2], outcomes[2]);
  ok(!back[1]!.ok && back[1]!.error instanceof Error);
  strictEqual((back[1] as { error: { errcode?: number } }).error.errcode, 19);
  // An item the worker left out fails on its own instead of answering a made-up row.
  const missing = encodeOutcomes(outcomes);
  missing.fresh.fill(NaN);
  ok(!decodeOutcomes(missing, batch)[0]!.ok);
});

Deno.test("appends in the worker get gap-free seqs while the main thread writes the same file", async () => {
  await withStore({
    appendWorker: APPEND_WORKER,
  }, async (store, ann, bob) => {
    // Main-thread writes (new users) race 400 appends the worker writes.
    const users = Array.from(
      { length: 40 },
      (_, i) => store.createUser(newUser(`1390000${1000 + i}`), 2),
    );
    const appends = Array.from(
      { length: 400 },
      (_, i) =>
        store.appendMessage(
          newMessage(i % 2 ? ann.id : bob.id, {
            dstid: i % 2 ? bob.id : ann.id,
            cid: `c${i}`,
          }),
          3,
        ),
    );
    strictEqual((await Promise.all(users)).length, 40);
    const results = await Promise.all(appends);
    deepStrictEqual(
      results.map((r) => r.message.seq).sort((a, b) => a - b),
      Array.from({ length: 400 }, (_, i) => i + 1),
    );
    ok(results.every((r) => !r.duplicate));
    // A resend is a duplicate with the first copy's seq, as on the main thread.
    const again = await store.appendMessage(newMessage(bob.id, { dstid: ann.id, cid: "c0" }), 4);
    strictEqual(again.duplicate, true);
    strictEqual(again.message.seq, results[0]!.message.seq);
    const page = await store.listMessages(results[0]!.message.conv, { afterSeq: 0, limit: 1000 });
    strictEqual(page.length, 400);
  });
});

Deno.test("the worker refuses to start on a file it cannot open, and leaves nothing running", async () => {
  await using db = await tempDb();
  await Deno.mkdir(db.path);
  // A folder where the database file should be: SQLite cannot open it.
  await rejects(AppendWorker.start(APPEND_WORKER, db.path), /unable to open/i);
  // Outside the granted folders the worker meets the process's permissions.
  await rejects(
    AppendWorker.start(APPEND_WORKER, "/nonexistent-lanchat/chat.db"),
    /NotCapable|read access/,
  );
});

Deno.test("a worker module that does not load leaves appends on the main thread", async () => {
  await withStore({
    appendWorker: new URL("./_no_such_worker.ts", import.meta.url),
  }, async (store, ann, bob) => {
    const r = await store.appendMessage(newMessage(ann.id, { dstid: bob.id, cid: "x" }), 2);
    strictEqual(r.message.seq, 1);
  });
});

Deno.test("a worker that crashes mid-batch: the batch is written on the main thread, once", async () => {
  await withStore({
    appendWorker: CRASHING_WORKER,
    // Every batch to the worker: a batch this small would be written here while it idles.
    appendInline: false,
  }, async (store, ann, bob) => {
    const first = await Promise.all(
      [0, 1, 2].map((i) =>
        store.appendMessage(newMessage(ann.id, { dstid: bob.id, cid: `k${i}` }), 2)
      ),
    );
    deepStrictEqual(first.map((r) => [r.message.seq, r.duplicate]), [[1, false], [2, false], [
      3,
      false,
    ]]);
    const later = await store.appendMessage(newMessage(bob.id, { dstid: ann.id, cid: "k3" }), 3);
    strictEqual(later.message.seq, 4);
  });
});

/** How many of this process's open files are the database at `path` (or its -wal, -shm). */
async function openHandlesOf(path: string): Promise<number> {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", `ls -l /proc/${Deno.pid}/fd`],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(stdout).split("\n").filter((l) => l.includes(path)).length;
}

Deno.test("a worker that crashes: its connection on the main thread is closed too", async () => {
  // Inline writes on (the default): the worker keeps a connection on this thread.
  await withStore({
    appendWorker: CRASHING_WORKER,
  }, async (store, ann, bob, path) => {
    const before = await openHandlesOf(path);
    // A batch too big to write inline goes to the worker, which crashes on it.
    await Promise.all(
      Array.from(
        { length: 40 },
        (_, i) => store.appendMessage(newMessage(ann.id, { dstid: bob.id, cid: `c${i}` }), 2),
      ),
    );
    let after = before;
    for (let i = 0; i < 100 && after >= before; i++) {
      await delay(10);
      after = await openHandlesOf(path);
    }
    ok(after < before, `open handles on the database: ${before} before the crash, ${after} after`);
  });
});

Deno.test("the worker's warnings reach onWarning, and the WAL sync interval reaches the worker", async () => {
  await using db = await tempDb();
  for (
    const [options, expected] of [[{}, "walSyncMs=100"], [{ walSyncMs: 0 }, "walSyncMs=0"]] as const
  ) {
    const warnings: string[] = [];
    const worker = await AppendWorker.start(WARNING_WORKER, db.path, {
      ...options,
      inlineWhenIdle: false,
      onWarning: (message) => warnings.push(message),
    });
    for (let i = 0; i < 100 && warnings.length === 0; i++) {
      await delay(10);
    }
    await worker.close();
    deepStrictEqual(warnings, [expected]);
  }
});

Deno.test("with background WAL syncs on, appends and close work as before", async () => {
  const stored = await withWorker({ walSyncMs: 5 }, async (worker, ann, bob) => {
    let seq = 0;
    for (let round = 0; round < 5; round++) {
      const outcomes = await worker.write(requests(ann, bob, 3, `w${round}`));
      for (const outcome of outcomes) {
        ok(outcome.ok);
        strictEqual(outcome.result.message.seq, ++seq);
      }
      // Let a background sync run between batches (and sometimes during one).
      await delay(round * 3);
    }
    await worker.close();
    strictEqual(worker.running, false);
  });
  strictEqual(stored, 15);
});

Deno.test("with durable acks, a failed sync on the worker refuses every later append, before it is written", async () => {
  await using db = await tempDb();
  const [ann, bob] = await twoUsers(db.path);
  const warnings: string[] = [];
  const worker = await AppendWorker.start(WARNING_WORKER, db.path, {
    durable: true,
    onWarning: (message) => warnings.push(message),
  });
  try {
    for (let i = 0; i < 100 && warnings.length === 0; i++) await delay(10);
    await delay(10);
    // Small and light: without the failure it would be written on this thread and acked.
    await rejects(worker.write(requests(ann, bob, 1, "after")), (e) => {
      ok(e instanceof Error && /cannot be stored safely/.test(e.message), String(e));
      strictEqual((e.cause as Error).message, "No space left on device (os error 28)");
      return true;
    });
    await rejects(worker.write(requests(ann, bob, INLINE_MAX_BATCH + 1, "big")), /stored safely/);
    deepStrictEqual(warnings, ["walSyncMs=100"], "no batch reached the worker");
    deepStrictEqual(worker.stats(), { inlineBatches: 0, workerBatches: 0 });
  } finally {
    await worker.close();
  }
});

Deno.test("a failed sync is not answered as a full disk, even when it failed for one: freeing space does not lift it, and the store is not ready", async () => {
  await withStore(
    { appendWorker: WARNING_WORKER, durableAcks: true },
    async (store, ann, bob) => {
      // The stand-in reports its failed (ENOSPC) sync right after it opens.
      await delay(50);
      await rejects(
        store.appendMessage(newMessage(ann.id, { dstid: bob.id, cid: "s1" }), 2),
        (e) => {
          ok(e instanceof SyncFailedError, String(e));
          ok(!(e instanceof ClientError), "not a retryable 'disk is full, try later'");
          return true;
        },
      );
      // /readyz asks the store: reachable, but refusing every message, is not ready.
      await rejects(store.ping(), SyncFailedError);
    },
  );
});

Deno.test("with durable acks, batches on this thread and on the worker (several in flight) are answered in order", async () => {
  const stored = await withWorker({ durable: true, walSyncMs: 0 }, async (worker, ann, bob) => {
    deepStrictEqual(seqsOf(await worker.write(requests(ann, bob, 1, "here"))), [1]);
    // Three at once to the worker (two in flight): each is answered after its own sync,
    // the later ones committing meanwhile, and the answers come in order.
    const answered: string[] = [];
    const batches = await Promise.all(
      [
        requests(ann, bob, INLINE_MAX_BATCH + 1, "big"),
        requests(ann, bob, 2, "next"),
        requests(ann, bob, 2, "last"),
      ].map((batch) =>
        worker.write(batch).then((outcomes) => {
          answered.push(batch[0]!.message.cid);
          return outcomes;
        })
      ),
    );
    deepStrictEqual(answered, ["big-0", "next-0", "last-0"]);
    deepStrictEqual(
      batches.map(seqsOf),
      [
        Array.from({ length: INLINE_MAX_BATCH + 1 }, (_, i) => i + 2),
        [INLINE_MAX_BATCH + 3, INLINE_MAX_BATCH + 4],
        [INLINE_MAX_BATCH + 5, INLINE_MAX_BATCH + 6],
      ],
    );
    ok(worker.stats().workerBatches >= 1, JSON.stringify(worker.stats()));
    await worker.close();
  });
  strictEqual(stored, INLINE_MAX_BATCH + 6);
});

Deno.test("an idle worker's small batches are written on this thread; larger ones and those behind a busy worker go to it, in call order", async () => {
  const stored = await withWorker({}, async (worker, ann, bob) => {
    // Light load, one batch at a time: no hop to the worker.
    for (let i = 1; i <= 3; i++) {
      deepStrictEqual(seqsOf(await worker.write(requests(ann, bob, 1, `light${i}`))), [i]);
      await delay(5);
    }
    deepStrictEqual(worker.stats(), { inlineBatches: 3, workerBatches: 0 });
    // Written here, then a batch too large for this thread, then one that finds the worker busy:
    // the second and third wait for the first, and the seqs follow the calls.
    const here = worker.write(requests(ann, bob, 1, "a"));
    const large = worker.write(requests(bob, ann, INLINE_MAX_BATCH + 1, "b"));
    const behind = worker.write(requests(ann, bob, 1, "c"));
    deepStrictEqual(seqsOf(await here), [4]);
    deepStrictEqual(
      seqsOf(await large),
      Array.from({ length: INLINE_MAX_BATCH + 1 }, (_, i) => 5 + i),
    );
    deepStrictEqual(seqsOf(await behind), [INLINE_MAX_BATCH + 6]);
    deepStrictEqual(worker.stats(), { inlineBatches: 4, workerBatches: 2 });
    // A resend (written here, like its first copy) is a duplicate with the first copy's seq.
    const [again] = await worker.write(requests(ann, bob, 1, "light1"));
    ok(again?.ok && again.result.duplicate && again.result.message.seq === 1);
  });
  strictEqual(stored, INLINE_MAX_BATCH + 6);
});

Deno.test("a resend of a message the worker stored is written on this thread as a duplicate of the first copy: no new row, no seq gap", async () => {
  const stored = await withWorker({}, async (worker, ann, bob) => {
    // Too large for this thread: the first copies go to the worker.
    const batch = requests(ann, bob, INLINE_MAX_BATCH + 1, "w");
    const first = await worker.write(batch);
    deepStrictEqual(seqsOf(first), Array.from({ length: INLINE_MAX_BATCH + 1 }, (_, i) => i + 1));
    deepStrictEqual(worker.stats(), { inlineBatches: 0, workerBatches: 1 });
    // One resent alone, later (a new server time), to an idle worker: written here.
    const [again] = await worker.write([{ ...batch[2]!, now: 3 }]);
    deepStrictEqual(worker.stats(), { inlineBatches: 1, workerBatches: 1 });
    const copy = first[2];
    ok(copy?.ok);
    // The stored row itself, ts included, not one rebuilt from the resend.
    deepStrictEqual(again, { ok: true, result: { message: copy.result.message, duplicate: true } });
    deepStrictEqual(seqsOf(await worker.write(requests(ann, bob, 1, "next"))), [
      INLINE_MAX_BATCH + 2,
    ]);
  });
  strictEqual(stored, INLINE_MAX_BATCH + 2);
});

Deno.test("a resend of a message stored on this thread is written by the worker as a duplicate of the first copy: no new row, no seq gap", async () => {
  const stored = await withWorker({}, async (worker, ann, bob) => {
    // One message to an idle worker: written here.
    const sent = requests(ann, bob, 1, "h")[0]!;
    const [copy] = await worker.write([sent]);
    ok(copy?.ok && !copy.result.duplicate);
    strictEqual(copy.result.message.seq, 1);
    deepStrictEqual(worker.stats(), { inlineBatches: 1, workerBatches: 0 });
    // Resent later amid new messages, in a batch too large for this thread: the worker writes it.
    const batch = requests(bob, ann, INLINE_MAX_BATCH, "w");
    batch.splice(2, 0, { ...sent, now: 3 });
    const outcomes = await worker.write(batch);
    deepStrictEqual(worker.stats(), { inlineBatches: 1, workerBatches: 1 });
    deepStrictEqual(outcomes[2], {
      ok: true,
      result: { message: copy.result.message, duplicate: true },
    });
    // The new messages around it and after it take the next seqs: the resend took none.
    deepStrictEqual(
      seqsOf(outcomes.filter((_, i) => i !== 2)),
      Array.from({ length: INLINE_MAX_BATCH }, (_, i) => i + 2),
    );
    deepStrictEqual(seqsOf(await worker.write(requests(ann, bob, 1, "next"))), [
      INLINE_MAX_BATCH + 2,
    ]);
  });
  strictEqual(stored, INLINE_MAX_BATCH + 2);
});

Deno.test("above INLINE_MAX_RATE appends a second even single batches go to the worker", async () => {
  await withWorker({}, async (worker, ann, bob) => {
    // Batches too large for this thread, back to back (so the worker writes them): above the
    // limit on any machine that writes one within SIZE / INLINE_MAX_RATE s (16 ms).
    const SIZE = 4 * INLINE_MAX_BATCH;
    let seq = 0;
    const until = performance.now() + 2 * INLINE_WINDOW_MS;
    while (performance.now() < until) {
      const seqs = seqsOf(await worker.write(requests(ann, bob, SIZE, `r${seq}`)));
      deepStrictEqual(seqs, Array.from({ length: SIZE }, () => ++seq));
    }
    const before = worker.stats();
    strictEqual(before.inlineBatches, 0);
    // A window has now measured the rate: a single append right after is small enough for
    // this thread and finds the worker idle, but the rate sends it to the worker.
    deepStrictEqual(seqsOf(await worker.write(requests(ann, bob, 1, "single"))), [seq + 1]);
    deepStrictEqual(worker.stats(), { inlineBatches: 0, workerBatches: before.workerBatches + 1 });
  });
});

Deno.test("after INLINE_STREAK batches in a row on this thread the next goes to the worker (its commits checkpoint)", async () => {
  await withWorker({}, async (worker, ann, bob) => {
    for (let i = 0; i <= INLINE_STREAK; i++) {
      deepStrictEqual(seqsOf(await worker.write(requests(ann, bob, 1, `s${i}`))), [i + 1]);
      // Paced well under INLINE_MAX_RATE.
      await delay(1);
    }
    deepStrictEqual(worker.stats(), { inlineBatches: INLINE_STREAK, workerBatches: 1 });
  });
});

Deno.test("with inlineWhenIdle false every batch goes to the worker", async () => {
  await withWorker({ inlineWhenIdle: false }, async (worker, ann, bob) => {
    deepStrictEqual(seqsOf(await worker.write(requests(ann, bob, 1, "x"))), [1]);
    deepStrictEqual(worker.stats(), { inlineBatches: 0, workerBatches: 1 });
  });
});

Deno.test("close waits for a batch being written on this thread; later writes are refused", async () => {
  await withWorker({}, async (worker, ann, bob) => {
    const written = worker.write(requests(ann, bob, 2, "z"));
    const closed = worker.close();
    deepStrictEqual(seqsOf(await written), [1, 2]);
    await closed;
    strictEqual(worker.running, false);
    await rejects(worker.write(requests(ann, bob, 1, "late")), /closed/);
    deepStrictEqual(worker.stats(), { inlineBatches: 1, workerBatches: 0 });
  });
});
