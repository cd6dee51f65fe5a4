import assert from "node:assert/strict";
import { DeadlineQueue, type Wakeable } from "../lib/deadline_queue.ts";
import { Session } from "../lib/session.ts";
import { FakeConnection, ManualTimers } from "./_chat_helpers.ts";

/** Records when it was woken, under a name. */
function recorder(log: string[], name: string): Wakeable {
  return { wake: (now) => log.push(`${name}@${now}`) };
}

Deno.test("DeadlineQueue wakes targets in deadline order through one timer", () => {
  const timers = new ManualTimers();
  const queue = new DeadlineQueue(timers);
  const t0 = timers.now();
  const log: string[] = [];
  for (const [name, ms] of [["c", 300], ["a", 100], ["d", 300], ["b", 200]] as const) {
    queue.add(t0 + ms, recorder(log, name));
  }
  assert.equal(timers.pending, 1);
  assert.equal(queue.size, 4);
  timers.advance(150);
  assert.deepStrictEqual(log, [`a@${t0 + 100}`]);
  timers.advance(1000);
  assert.deepStrictEqual(log, [`a@${t0 + 100}`, `b@${t0 + 200}`, `c@${t0 + 300}`, `d@${t0 + 300}`]);
  assert.equal(queue.size, 0);
  assert.equal(timers.pending, 0);
});

Deno.test("DeadlineQueue.cancel() skips the target and drops the timer with the last deadline", () => {
  const timers = new ManualTimers();
  const queue = new DeadlineQueue(timers);
  const t0 = timers.now();
  const log: string[] = [];
  const a = queue.add(t0 + 100, recorder(log, "a"));
  const b = queue.add(t0 + 200, recorder(log, "b"));
  queue.cancel(a);
  queue.cancel(a); // twice is harmless
  assert.equal(queue.size, 1);
  timers.advance(150);
  assert.deepStrictEqual(log, []);
  queue.cancel(b);
  assert.equal(queue.size, 0);
  assert.equal(timers.pending, 0);
  timers.advance(1000);
  assert.deepStrictEqual(log, []);
});

Deno.test("DeadlineQueue takes an earlier deadline added later, and one added while waking", () => {
  const timers = new ManualTimers();
  const queue = new DeadlineQueue(timers);
  const t0 = timers.now();
  const log: string[] = [];
  queue.add(t0 + 500, recorder(log, "late"));
  queue.add(t0 + 50, {
    wake(now) {
      log.push(`early@${now}`);
      queue.add(now + 10, recorder(log, "again"));
    },
  });
  timers.advance(100);
  assert.deepStrictEqual(log, [`early@${t0 + 50}`, `again@${t0 + 60}`]);
  assert.equal(timers.pending, 1);
  timers.advance(400);
  assert.equal(log.at(-1), `late@${t0 + 500}`);
  assert.equal(timers.pending, 0);
});

Deno.test("DeadlineQueue drops cancelled entries once they outnumber the live ones", () => {
  const timers = new ManualTimers();
  const queue = new DeadlineQueue(timers);
  const t0 = timers.now();
  const log: string[] = [];
  const keep = queue.add(t0 + 5000, recorder(log, "keep"));
  const gone = Array.from({ length: 3000 }, (_, i) => queue.add(t0 + 1 + i, recorder(log, "x")));
  for (const d of gone) queue.cancel(d);
  assert.equal(queue.size, 1);
  timers.advance(10_000);
  assert.deepStrictEqual(log, [`keep@${keep.at}`]);
  assert.equal(timers.pending, 0);
});

Deno.test("Sessions sharing a DeadlineQueue hold one timer between them, and none once closed", () => {
  const timers = new ManualTimers();
  const deadlines = new DeadlineQueue(timers);
  const closes: number[] = [];
  const handler = {
    onFrame: () => Promise.resolve(),
    onClose: (_s: Session, code: number) => void closes.push(code),
  };
  const sessions = Array.from({ length: 100 }, (_, i) =>
    new Session(new FakeConnection(), {
      timers,
      deadlines,
      idleTimeoutMs: 60_000,
      stillValid: () => Promise.resolve(true),
      id: `s${i}`,
      userId: i + 1,
      handler,
    }));
  assert.equal(timers.pending, 1);
  assert.equal(deadlines.size, 100);
  sessions[0]?.receive('{"cmd":0}');
  timers.advance(30_000);
  sessions[0]?.receive('{"cmd":0}');
  timers.advance(59_000); // the recheck at 60 s does not reset the idle clock
  assert.equal(closes.length, 99);
  assert.ok(closes.every((c) => c === 4001));
  assert.equal(sessions[0]?.closed, false);
  sessions[0]?.close("normal");
  assert.equal(deadlines.size, 0);
  assert.equal(timers.pending, 0);
});
