/**
 * One timer for many deadlines. Every idle session used to hold two runtime
 * timers (idle timeout, login recheck) at ~600 bytes of JS heap each; a
 * node with 10,000 sockets now holds one timer and a binary heap of small
 * entries. Deadlines fire in order, at their time, through the injected
 * {@linkcode Timers}, so tests drive them by hand as before. `Timers` (the
 * clock seam) lives here too; `session.ts` re-exports it.
 *
 * @module
 */

/** Time, injectable. Timer ids are opaque. */
export interface Timers {
  /** Epoch milliseconds. */
  now(): number;
  /** Call `fn` once after `ms`. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancel a timer; unknown ids are ignored. */
  clearTimeout(id: unknown): void;
}

/** The real clock and timers. */
export const SYSTEM_TIMERS: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};

/** Something woken at a deadline. */
export interface Wakeable {
  /** The deadline passed; `now` is the clock's reading. Must not throw. */
  wake(now: number): void;
}

/** A scheduled wake-up; give it back to {@linkcode DeadlineQueue.cancel}. */
export interface Deadline {
  /** Epoch ms it fires at. */
  readonly at: number;
}

interface Entry extends Deadline {
  /** Insertion order: equal deadlines fire first-in first-out, like runtime timers. */
  readonly seq: number;
  /** Undefined once cancelled (the entry stays in the heap until it comes up). */
  target: Wakeable | undefined;
}

/** A min-heap of deadlines driven by a single timer. */
export class DeadlineQueue {
  #timers: Timers;
  #heap: Entry[] = [];
  #live = 0;
  #timer: unknown;
  #timerAt = Infinity;
  #firing = false;
  #seq = 0;

  /** Schedule through `timers`. */
  constructor(timers: Timers) {
    this.#timers = timers;
  }

  /** Deadlines scheduled and not yet fired or cancelled. */
  get size(): number {
    return this.#live;
  }

  /** Wake `target` once at epoch ms `at`. */
  add(at: number, target: Wakeable): Deadline {
    const entry: Entry = { at, seq: this.#seq++, target };
    this.#push(entry);
    this.#live++;
    if (at < this.#timerAt) this.#arm();
    return entry;
  }

  /** Cancel `deadline`; a fired or cancelled one is ignored. */
  cancel(deadline: Deadline): void {
    const entry = deadline as Entry;
    if (entry.target === undefined) return;
    entry.target = undefined;
    this.#live--;
    const heap = this.#heap;
    if (this.#live === 0) {
      heap.length = 0;
      if (!this.#firing) this.#disarm();
    } else if (heap.length > 1024 && heap.length > 2 * this.#live) {
      // Mostly cancelled entries (sessions that closed): rebuild without them.
      const live = heap.filter((e) => e.target !== undefined);
      heap.length = 0;
      for (const e of live) this.#push(e);
    }
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#firing = true;
    try {
      const now = this.#timers.now();
      for (;;) {
        const top = this.#heap[0];
        if (top === undefined || top.at > now) break;
        this.#pop();
        const target = top.target;
        if (target === undefined) continue;
        top.target = undefined;
        this.#live--;
        target.wake(now);
      }
    } finally {
      this.#firing = false;
      if (this.#live === 0) this.#heap.length = 0;
      this.#arm();
    }
  }

  #arm(): void {
    if (this.#firing) return;
    this.#disarm();
    const top = this.#heap[0];
    if (top === undefined) return;
    this.#timerAt = top.at;
    this.#timer = this.#timers.setTimeout(
      () => this.#fire(),
      Math.max(0, top.at - this.#timers.now()),
    );
  }

  #disarm(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #push(entry: Entry): void {
    const heap = this.#heap;
    let i = heap.push(entry) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (!before(entry, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = entry;
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const r = l + 1;
      const c = r < heap.length && before(heap[r]!, heap[l]!) ? r : l;
      if (!before(heap[c]!, last)) break;
      heap[i] = heap[c]!;
      i = c;
    }
    heap[i] = last;
  }
}

/** Whether `a` fires before `b`. */
function before(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
