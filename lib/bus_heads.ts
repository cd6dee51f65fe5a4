/**
 * Tail repair for an at-most-once bus. A session fills a hole when a later
 * seq arrives, but the last message(s) of a burst have nothing after them.
 * So each node remembers the conversations it published messages in, and
 * for `activeMs` after each message it announces their newest seq on the
 * bus every tick ("heads"); a receiving session that is behind pulls the
 * rest from the store. Recent heads are kept for `keepMs` so they can be
 * announced once more after the transport reconnects. Pure: the caller
 * ticks it with the time.
 *
 * @module
 */

import type { ConvHead } from "./bus.ts";

/** Tunables of {@linkcode HeadTracker}. */
export interface HeadTrackerOptions {
  /** How long after its last message a conversation is announced. @default {10000} */
  readonly activeMs?: number;
  /** How long a head is kept for a re-announce after a reconnect. @default {300000} */
  readonly keepMs?: number;
  /** Heads per envelope (keeps a datagram small). @default {16} */
  readonly perEnvelope?: number;
  /** Conversations remembered at most; the oldest are forgotten. @default {10000} */
  readonly maxConvs?: number;
}

/** Newest published seq per conversation, with when it was published. */
export class HeadTracker {
  #heads = new Map<string, { seq: number; at: number }>();
  #activeMs: number;
  #keepMs: number;
  #perEnvelope: number;
  #maxConvs: number;

  /** Build an empty tracker. */
  constructor(options: HeadTrackerOptions = {}) {
    this.#activeMs = options.activeMs ?? 10_000;
    this.#keepMs = options.keepMs ?? 300_000;
    this.#perEnvelope = options.perEnvelope ?? 16;
    this.#maxConvs = options.maxConvs ?? 10_000;
  }

  /** A message with `seq` in `conv` was published at `now`. */
  note(conv: string, seq: number, now: number): void {
    const old = this.#heads.get(conv);
    this.#heads.delete(conv);
    this.#heads.set(conv, { seq: Math.max(seq, old?.seq ?? 0), at: now });
    if (this.#heads.size > this.#maxConvs) {
      const oldest = this.#heads.keys().next().value;
      if (oldest !== undefined) this.#heads.delete(oldest);
    }
  }

  /**
   * The heads to announce at `now`, in groups of at most `perEnvelope`:
   * the recently active ones, or with `all` every head still kept.
   * Forgets heads older than `keepMs`.
   */
  due(now: number, all = false): ConvHead[][] {
    const heads: ConvHead[] = [];
    for (const [conv, { seq, at }] of this.#heads) {
      if (now - at > this.#keepMs) {
        this.#heads.delete(conv);
      } else if (all || now - at <= this.#activeMs) {
        heads.push({ conv, seq });
      }
    }
    const groups: ConvHead[][] = [];
    for (let i = 0; i < heads.length; i += this.#perEnvelope) {
      groups.push(heads.slice(i, i + this.#perEnvelope));
    }
    return groups;
  }

  /** Conversations remembered (for tests). */
  get size(): number {
    return this.#heads.size;
  }
}
