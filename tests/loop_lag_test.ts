/**
 * The event loop lag probe (`lib/loop_lag.ts`): one timer at a time, each
 * reading how late it fired on the monotonic clock, and nothing left after
 * stop.
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { LOOP_LAG_INTERVAL_MS, LoopLagProbe } from "../lib/loop_lag.ts";
import { ManualTimers } from "./_chat_helpers.ts";

/** A probe on hand-driven timers and a clock the test sets; its readings, seconds. */
function probe() {
  const timers = new ManualTimers();
  const clock = { ms: 0 };
  const readings: number[] = [];
  const p = new LoopLagProbe({
    timers,
    clock: () => clock.ms,
    observe: (seconds) => readings.push(seconds),
  });
  /** The timer fires with the clock at `ms`. */
  const fireAt = (ms: number) => {
    clock.ms = ms;
    timers.advance(LOOP_LAG_INTERVAL_MS);
  };
  return { p, timers, readings, fireAt };
}

Deno.test("the probe reads how late each timer fired, against the time it asked for", () => {
  const { p, timers, readings, fireAt } = probe();
  const I = LOOP_LAG_INTERVAL_MS;
  p.start();
  p.start(); // a second start adds no timer
  strictEqual(timers.pending, 1);
  fireAt(I); // due at I: on time
  fireAt(2 * I + 7); // due at 2I: 7 ms late
  fireAt(3 * I + 7 + 250); // due at 3I + 7 (counted from the late one): 250 ms late
  fireAt(4 * I + 200); // due at 4I + 257: early clock readings count as on time, never negative
  deepStrictEqual(readings, [0, 0.007, 0.25, 0]);
  strictEqual(timers.pending, 1);
});

Deno.test("stop leaves no timer and no more readings", () => {
  const { p, timers, readings, fireAt } = probe();
  const I = LOOP_LAG_INTERVAL_MS;
  p.start();
  fireAt(I);
  p.stop();
  strictEqual(timers.pending, 0);
  fireAt(2 * I);
  deepStrictEqual(readings, [0]);
  // Started again (at 2I), it probes again.
  p.start();
  fireAt(3 * I + 3);
  deepStrictEqual(readings, [0, 0.003]);
});
