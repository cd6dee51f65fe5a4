/**
 * The WAL flusher (lib/_wal_flusher.ts): commits are synced within the
 * interval, one sync at a time, never for nothing; a failing sync is told
 * once and stops the flusher; close waits for the sync in flight. And
 * `syncDataAt` syncs a real file and takes a missing one as nothing to do.
 */

import { deepStrictEqual, rejects, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { syncDataAt, WalFlusher } from "../lib/_wal_flusher.ts";
import { delay } from "./_chat_helpers.ts";

const INTERVAL_MS = 20;

/** A sync that is counted and, with `hold`, waits until released (or fails with `fail`). */
function fakeSync(options: { hold?: boolean; fail?: Error } = {}) {
  const state = { syncs: 0, inFlight: 0, maxInFlight: 0, release: () => {} };
  const sync = async () => {
    state.syncs++;
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    try {
      if (options.fail !== undefined) throw options.fail;
      if (options.hold) await new Promise<void>((resolve) => state.release = resolve);
    } finally {
      state.inFlight--;
    }
  };
  return { state, sync };
}

Deno.test("commits within one interval make one sync, after the interval; none without commits", async () => {
  const { state, sync } = fakeSync();
  const errors: unknown[] = [];
  const flusher = new WalFlusher({ sync, intervalMs: INTERVAL_MS, onError: (e) => errors.push(e) });
  await delay(INTERVAL_MS * 3);
  strictEqual(state.syncs, 0, "nothing written, nothing synced");
  const t0 = performance.now();
  flusher.wrote();
  flusher.wrote();
  flusher.wrote();
  strictEqual(state.syncs, 0, "never synced on the committing thread's turn");
  while (state.syncs === 0 && performance.now() - t0 < 2000) await delay(1);
  strictEqual(performance.now() - t0 >= INTERVAL_MS - 2, true, "the commits waited the interval");
  await delay(INTERVAL_MS * 3);
  strictEqual(state.syncs, 1, "three commits, one sync");
  flusher.wrote();
  await delay(INTERVAL_MS * 3);
  strictEqual(state.syncs, 2);
  await flusher.close();
  deepStrictEqual(errors, []);
});

Deno.test("a commit during a sync gets one more sync after it, never two at once", async () => {
  const { state, sync } = fakeSync({ hold: true });
  const flusher = new WalFlusher({ sync, intervalMs: INTERVAL_MS, onError: () => {} });
  flusher.wrote();
  await delay(INTERVAL_MS * 2);
  strictEqual(state.syncs, 1);
  flusher.wrote();
  flusher.wrote();
  await delay(INTERVAL_MS * 3);
  strictEqual(state.syncs, 1, "no second sync while the first runs");
  state.release();
  await delay(INTERVAL_MS * 3);
  strictEqual(state.syncs, 2, "the commits made during the sync are synced after it");
  state.release();
  await delay(INTERVAL_MS * 3);
  strictEqual(state.syncs, 2, "and nothing more");
  strictEqual(state.maxInFlight, 1);
  await flusher.close();
});

Deno.test("close waits for the sync in flight; commits after close are ignored", async () => {
  const { state, sync } = fakeSync({ hold: true });
  const flusher = new WalFlusher({ sync, intervalMs: INTERVAL_MS, onError: () => {} });
  flusher.wrote();
  await delay(INTERVAL_MS * 2);
  let closed = false;
  const closing = flusher.close().then(() => closed = true);
  await delay(INTERVAL_MS);
  strictEqual(closed, false, "close waits for the sync");
  state.release();
  await closing;
  flusher.wrote();
  await delay(INTERVAL_MS * 3);
  strictEqual(state.syncs, 1);
});

Deno.test("close before the interval ends cancels the pending sync", async () => {
  const { state, sync } = fakeSync();
  const flusher = new WalFlusher({ sync, intervalMs: INTERVAL_MS, onError: () => {} });
  flusher.wrote();
  await flusher.close();
  await delay(INTERVAL_MS * 3);
  strictEqual(state.syncs, 0);
});

Deno.test("a failing sync is told once and stops the flusher", async () => {
  const failure = new Error("EIO");
  const { state, sync } = fakeSync({ fail: failure });
  const errors: unknown[] = [];
  const flusher = new WalFlusher({ sync, intervalMs: INTERVAL_MS, onError: (e) => errors.push(e) });
  flusher.wrote();
  await delay(INTERVAL_MS * 3);
  flusher.wrote();
  await delay(INTERVAL_MS * 3);
  deepStrictEqual(errors, [failure]);
  strictEqual(state.syncs, 1);
  await flusher.close();
});

Deno.test("syncDataAt syncs a real file, and a missing file is nothing to sync", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_wal_flusher_" });
  try {
    const path = join(dir, "chat.db-wal");
    await Deno.writeTextFile(path, "frames");
    await syncDataAt(path);
    await syncDataAt(join(dir, "missing-wal"));
    await syncDataAt(join(dir, "missing-dir", "x-wal")); // a missing folder: nothing either
    // Any other failure is the caller's to hear about.
    await rejects(syncDataAt(dir + "\0"), (e) => !(e instanceof Deno.errors.NotFound));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("durable(): a sync starts at once and answers the commits made before it began", async () => {
  const { state, sync } = fakeSync({ hold: true });
  // An interval far longer than the test: only durable() can start a sync.
  const flusher = new WalFlusher({ sync, intervalMs: 60_000, onError: () => {} });
  const order: string[] = [];
  flusher.wrote();
  const first = flusher.durable().then(() => order.push("first"));
  await delay(1);
  strictEqual(state.syncs, 1, "started without waiting for the interval");
  // Committed while that sync runs: it may have missed them, so they share the next one.
  const second = flusher.durable().then(() => order.push("second"));
  const third = flusher.durable().then(() => order.push("third"));
  await delay(5);
  deepStrictEqual(order, [], "nothing answered before its sync ends");
  state.release();
  await first;
  await delay(1);
  strictEqual(state.syncs, 2, "one more sync for the two commits made meanwhile");
  deepStrictEqual(order, ["first"]);
  state.release();
  await Promise.all([second, third]);
  deepStrictEqual(order, ["first", "second", "third"]);
  strictEqual(state.maxInFlight, 1);
  await flusher.close();
});

Deno.test("durable(): a failed sync fails its commits and every later one; close syncs for waiters", async () => {
  const broken = new Error("EIO");
  const failing = fakeSync({ fail: broken });
  const errors: unknown[] = [];
  const flusher = new WalFlusher({
    sync: failing.sync,
    intervalMs: 60_000,
    onError: (e) => errors.push(e),
  });
  await rejects(flusher.durable(), broken);
  await rejects(flusher.durable(), broken, "no later sync can prove the lost pages written");
  deepStrictEqual(errors, [broken], "told once");
  strictEqual(failing.state.syncs, 1);
  await flusher.close();

  const held = fakeSync({ hold: true });
  const closing = new WalFlusher({ sync: held.sync, intervalMs: 60_000, onError: () => {} });
  const before = closing.durable();
  await delay(1);
  const during = closing.durable();
  const closed = closing.close();
  held.state.release();
  await before;
  await delay(1);
  held.state.release();
  await during;
  await closed;
  strictEqual(held.state.syncs, 2, "the waiter's sync ran at close");
  await rejects(closing.durable(), /closed/);
});
