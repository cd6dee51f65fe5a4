/**
 * How late this node's event loop runs. Every socket of a node shares one
 * loop, so a pause of it (a long GC, a synchronous SQLite commit, a burst
 * of work, a host that stole the CPU) delays every message in flight at
 * once. A timer that asks to fire every `intervalMs` notes how much later
 * it fired; spread evenly over time, those readings are the wait an event
 * arriving at a random moment sees, so the share of readings at or above
 * 5 ms says how much of a light-load p99 the loop alone explains. The
 * readings go to `lanchat_event_loop_lag_seconds` (docs/deploy.md, Metrics).
 *
 * @module
 */

import type { Timers } from "./deadline_queue.ts";

/**
 * How often the probe fires, ms. Each wake-up of an idle process costs: on
 * the test machine (a 2-core VM) a bare Deno process with such a timer used
 * 0.3 % of a core more than one without at 100 ms, 0.65 % at 50 ms.
 */
export const LOOP_LAG_INTERVAL_MS = 100;

/** Options of {@linkcode LoopLagProbe}. */
export interface LoopLagOptions {
  /** Schedules the probe. */
  readonly timers: Timers;
  /** A monotonic clock, ms (`performance.now`): the timers' epoch clock may step. */
  readonly clock: () => number;
  /** Gets each reading: how late the probe fired, seconds (0 when on time). */
  readonly observe: (seconds: number) => void;
  /** @default {LOOP_LAG_INTERVAL_MS} */
  readonly intervalMs?: number;
}

/** A timer that measures how late it fires, until stopped. */
export class LoopLagProbe {
  #options: LoopLagOptions;
  #intervalMs: number;
  #timer: unknown;
  #running = false;

  constructor(options: LoopLagOptions) {
    this.#options = options;
    this.#intervalMs = options.intervalMs ?? LOOP_LAG_INTERVAL_MS;
  }

  /** Start probing; a second call does nothing. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  #schedule(): void {
    const due = this.#options.clock() + this.#intervalMs;
    this.#timer = this.#options.timers.setTimeout(() => {
      if (!this.#running) return;
      this.#options.observe(Math.max(0, this.#options.clock() - due) / 1000);
      this.#schedule();
    }, this.#intervalMs);
  }

  /** Stop probing (no timer is left behind). */
  stop(): void {
    this.#running = false;
    this.#options.timers.clearTimeout(this.#timer);
  }
}
