/**
 * How late the generator's own event loop ran during a rate step. The
 * generator takes each latency sample when a delivery's callback runs, so a
 * pause of its loop (its GC, the machine's other work, a host that stole
 * the virtual CPU) adds to every sample that arrived in it: a light-load
 * p99 of 10 ms next to a loop that stalled for 10 ms says little about the
 * server. Fed by the send loop's 2 ms ticks; no timer of its own.
 *
 * @module
 */

/** Lateness of a step's loop ticks. */
export interface LoopLag {
  /** The longest tick beyond its interval, ms (rounded to 0.01). */
  readonly maxMs: number;
  /** Ticks at least {@linkcode STALL_MS} beyond their interval. */
  readonly stalls: number;
}

/** A tick this late (ms) counts as a stall: the light-load p99 target (issue #7). */
export const STALL_MS = 5;

/** Records the gaps between ticks meant to come every `intervalMs`. */
export class LoopLagMeter {
  #intervalMs: number;
  #last: number | undefined;
  #maxMs = 0;
  #stalls = 0;

  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs;
  }

  /** A tick ran at `now` (ms, a monotonic clock); the first one only starts the count. */
  tick(now: number): void {
    const last = this.#last;
    this.#last = now;
    if (last === undefined) return;
    const late = now - last - this.#intervalMs;
    if (late > this.#maxMs) this.#maxMs = late;
    if (late >= STALL_MS) this.#stalls++;
  }

  /** What the ticks so far showed. */
  read(): LoopLag {
    return { maxMs: Math.round(this.#maxMs * 100) / 100, stalls: this.#stalls };
  }
}
