/**
 * The live messages a session holds while its catch-up runs (the gate of
 * `session_delivery.ts`), so the replay comes first. Their frames are kept
 * while they fit in a byte budget; past it, only which seqs of which
 * conversation came, and the session reads those from the store when the
 * gate opens. So a long catch-up under heavy traffic keeps a bounded amount
 * in memory and does not fill the client's send queue (which closed a
 * client that was reading with 4000) with messages the store holds anyway.
 *
 * @module
 */

import type { StoredMessage } from "./store.ts";

/** A held message and its encoded frame. */
export interface HeldFrame {
  readonly message: StoredMessage;
  readonly text: string;
}

/** The lowest and highest seq held of one conversation. */
export interface HeldRange {
  first: number;
  last: number;
}

/** Live messages held until a session's gate opens. */
export class HeldLive {
  #budget: number;
  #frames: HeldFrame[] = [];
  #bytes = 0;
  #ranges: Map<string, HeldRange> | undefined;

  /** Keep frames up to `budgetBytes` (UTF-16 units of their text), then seqs only. */
  constructor(budgetBytes: number) {
    this.#budget = budgetBytes;
  }

  /** Hold one live message. */
  add(message: StoredMessage, text: string): void {
    if (this.#ranges === undefined) {
      if (this.#bytes + text.length <= this.#budget) {
        this.#frames.push({ message, text });
        this.#bytes += text.length;
        return;
      }
      // Past the budget: what is held becomes seqs too, so order is one rule.
      this.#ranges = new Map();
      for (const held of this.#frames) this.#note(this.#ranges, held.message);
      this.#frames = [];
      this.#bytes = 0;
    }
    this.#note(this.#ranges, message);
  }

  #note(ranges: Map<string, HeldRange>, { conv, seq }: StoredMessage): void {
    const range = ranges.get(conv);
    if (range === undefined) {
      ranges.set(conv, { first: seq, last: seq });
    } else {
      range.first = Math.min(range.first, seq);
      range.last = Math.max(range.last, seq);
    }
  }

  /** The held frames in arrival order; none once past the budget. */
  get frames(): readonly HeldFrame[] {
    return this.#frames;
  }

  /**
   * Past the budget: per conversation, in the order of its first message,
   * the seqs to read from the store. Undefined while the frames fit.
   */
  get ranges(): ReadonlyMap<string, Readonly<HeldRange>> | undefined {
    return this.#ranges;
  }

  /** Bytes of the frames held (0 once past the budget). */
  get bytes(): number {
    return this.#bytes;
  }
}
