/** UploadGate: uploads read at once per node, per user, and the bytes each user has in flight. */

import { deepStrictEqual, rejects, strictEqual } from "node:assert/strict";
import { BusyError, RateLimitError } from "../lib/errors.ts";
import { UploadGate } from "../lib/upload_gate.ts";

/** Whether `p` has settled after the pending microtasks and timers ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => done = true, () => done = true);
  await new Promise((r) => setTimeout(r, 0));
  return done;
}

Deno.test("UploadGate lets `concurrent` uploads through and hands each freed turn to the first waiter", async () => {
  const limited: string[] = [];
  const gate = new UploadGate({ concurrent: 2, onLimited: (l) => limited.push(l) });
  const a = await gate.enter(1);
  const b = await gate.enter(2);
  strictEqual(gate.running, 2);
  const c = gate.enter(3);
  const d = gate.enter(4);
  strictEqual(await settled(c), false);
  strictEqual(gate.waiting, 2);
  a.release();
  a.release(); // a second release gives nothing back twice
  const cTurn = await c;
  strictEqual(await settled(d), false, "only one turn was freed");
  strictEqual(gate.running, 2);
  b.release();
  const dTurn = await d;
  cTurn.release();
  dTurn.release();
  strictEqual(gate.running, 0);
  strictEqual(gate.waiting, 0);
  deepStrictEqual(limited, []);
});

Deno.test("UploadGate refuses a user's upload past the per-user bound with 429, others still get in", async () => {
  const limited: string[] = [];
  const gate = new UploadGate({ concurrent: 1, perUser: 2, onLimited: (l) => limited.push(l) });
  const first = await gate.enter(7);
  const second = gate.enter(7); // waits: the node's one turn is held
  const third = await gate.enter(7).catch((e) => e);
  strictEqual(third instanceof RateLimitError, true);
  strictEqual((third as RateLimitError).status, 429);
  deepStrictEqual(limited, ["upload_user"]);
  first.release();
  const turn = await second;
  turn.release();
  // Back under the bound once they finished.
  (await gate.enter(7)).release();
});

Deno.test("UploadGate answers 503 with a retry hint when the queue is full or the wait runs out", async () => {
  const limited: string[] = [];
  const gate = new UploadGate({
    concurrent: 1,
    queue: 1,
    waitMs: 30,
    onLimited: (l) => limited.push(l),
  });
  const held = await gate.enter(1);
  const queued = gate.enter(2);
  const full = await gate.enter(3).catch((e) => e);
  strictEqual(full instanceof BusyError, true);
  strictEqual((full as BusyError).status, 503);
  strictEqual((full as BusyError).retryAfterSeconds >= 1, true);
  await rejects(queued, BusyError);
  strictEqual(gate.waiting, 0);
  deepStrictEqual(limited, ["upload_busy", "upload_busy"]);
  held.release();
  strictEqual(gate.running, 0);
  // The user who timed out holds nothing: both of their turns are free again.
  const again = [await gate.enter(2)];
  again[0]?.release();
  again.push(await gate.enter(2));
  again[1]?.release();
});

Deno.test("UploadGate.reserve tells an upload the bytes its user's other uploads noted", async () => {
  const gate = new UploadGate({ concurrent: 4 });
  const a = await gate.enter(1);
  const b = await gate.enter(1);
  const other = await gate.enter(2);
  strictEqual(a.reserve(600), 0);
  strictEqual(other.reserve(900), 0, "another user's bytes do not count");
  strictEqual(b.reserve(500), 600);
  strictEqual(a.reserve(600), 500, "an upload's own bytes do not count");
  a.release();
  strictEqual(b.reserve(500), 0, "a released upload's bytes are gone");
  a.reserve(100); // after release: ignored
  strictEqual(b.reserve(500), 0);
  b.release();
  other.release();
});

Deno.test("UploadGate: a waiter whose client went away leaves the queue and takes no turn", async () => {
  const gate = new UploadGate({ concurrent: 1 });
  const held = await gate.enter(1);
  const gone = new AbortController();
  const waiting = gate.enter(2, gone.signal);
  const next = gate.enter(3);
  strictEqual(gate.waiting, 2);
  gone.abort(new Error("client closed"));
  await rejects(waiting, /client closed/);
  strictEqual(gate.waiting, 1);
  held.release();
  (await next).release();
  strictEqual(gate.running, 0);
  // User 2 holds nothing after the abort: two uploads of theirs are let in again (no 429).
  const first = await gate.enter(2);
  const second = gate.enter(2);
  first.release();
  (await second).release();
  await rejects(gate.enter(4, AbortSignal.abort(new Error("gone before"))), /gone before/);
  strictEqual(gate.running, 0);
});
