/**
 * A token-bucket rate limiter keyed by string, with an injected clock and
 * bounded memory. Each key has a bucket of `burst` tokens that refills at
 * `perSecond` tokens a second; a take succeeds while a token is left.
 * Buckets that have refilled to full carry no information and are pruned;
 * past `maxKeys` the least recently used bucket is dropped (which can only
 * make the limiter more lenient, never stricter). Pure apart from the clock.
 *
 * @module
 */

/** Settings of one {@linkcode RateLimiter}. */
export interface RateLimiterOptions {
  /** Tokens a full bucket holds: how many takes may come at once. */
  readonly burst: number;
  /** Tokens added per second (may be fractional, e.g. 10 per 15 minutes). */
  readonly perSecond: number;
  /** Most keys kept; older buckets are dropped beyond it. @default {10000} */
  readonly maxKeys?: number;
  /** Clock in epoch ms. @default {Date.now} */
  readonly now?: () => number;
}

/** What a take answers: allowed, or refused with the wait until a token is back. */
export type RateDecision =
  | { readonly ok: true }
  | { readonly ok: false; readonly retryAfterMs: number };

/**
 * Tokens short of a whole one that still count as whole: a bucket refilled
 * for exactly the wait it was told (2 an hour: 1,800 s) holds 0.9999999999
 * in floats, and a client that waited its Retry-After must not be refused.
 */
const EPSILON = 1e-6;

interface Bucket {
  tokens: number;
  at: number;
}

/** A keyed token bucket; see the module doc. */
export class RateLimiter {
  #burst: number;
  #perMs: number;
  #maxKeys: number;
  #now: () => number;
  #buckets = new Map<string, Bucket>();
  #sincePrune = 0;

  /** Build a limiter; `burst` ≥ 1 and `perSecond` > 0. */
  constructor(options: RateLimiterOptions) {
    if (!(options.burst >= 1) || !(options.perSecond > 0)) {
      throw new RangeError("A rate limiter needs burst >= 1 and perSecond > 0");
    }
    this.#burst = options.burst;
    this.#perMs = options.perSecond / 1000;
    this.#maxKeys = Math.max(1, options.maxKeys ?? 10_000);
    this.#now = options.now ?? Date.now;
  }

  /** Take `cost` tokens from `key`'s bucket, or say how long to wait. */
  take(key: string, cost = 1): RateDecision {
    const bucket = this.#refilled(key);
    if (bucket.tokens >= cost - EPSILON) {
      bucket.tokens -= cost;
      this.#store(key, bucket);
      return { ok: true };
    }
    this.#store(key, bucket);
    return { ok: false, retryAfterMs: this.#waitMs(bucket, cost) };
  }

  /** Whether `key` could take `cost` tokens now, without taking them. */
  check(key: string, cost = 1): RateDecision {
    const bucket = this.#peek(key);
    return bucket.tokens >= cost - EPSILON ? { ok: true } : {
      ok: false,
      retryAfterMs: this.#waitMs(bucket, cost),
    };
  }

  /** Forget `key` (e.g. after a successful login). */
  reset(key: string): void {
    this.#buckets.delete(key);
  }

  /** Buckets held now (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Drop every bucket that has refilled to full. */
  prune(): void {
    const now = this.#now();
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (now - b.at) * this.#perMs >= this.#burst) this.#buckets.delete(key);
    }
    this.#sincePrune = 0;
  }

  #peek(key: string): Bucket {
    const now = this.#now();
    const b = this.#buckets.get(key);
    if (b === undefined) return { tokens: this.#burst, at: now };
    const elapsed = Math.max(0, now - b.at);
    return { tokens: Math.min(this.#burst, b.tokens + elapsed * this.#perMs), at: now };
  }

  #refilled(key: string): Bucket {
    const bucket = this.#peek(key);
    // Re-insert so Map order is least recently used first.
    this.#buckets.delete(key);
    return bucket;
  }

  #store(key: string, bucket: Bucket): void {
    this.#buckets.set(key, bucket);
    // A sweep every maxKeys takes keeps the cost O(1) per take, amortized.
    if (++this.#sincePrune >= this.#maxKeys) this.prune();
    while (this.#buckets.size > this.#maxKeys) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest === undefined) break;
      this.#buckets.delete(oldest);
    }
  }

  #waitMs(bucket: Bucket, cost: number): number {
    if (cost > this.#burst) return Infinity;
    // Less a nanosecond: 1 / (2 / 900 s) is 450000.0000001 ms in floats, which must not show as 451 s.
    return Math.ceil((cost - bucket.tokens) / this.#perMs - 1e-6);
  }
}

/**
 * Counts of live things per key (e.g. open sockets per user) with a cap.
 * Keys at zero are deleted, so memory follows the live count.
 */
export class SlotCounter {
  #max: number;
  #counts = new Map<string, number>();

  /** Allow at most `max` slots per key. */
  constructor(max: number) {
    this.#max = max;
  }

  /** Take a slot for `key`; false (nothing taken) when it already has `max`. */
  acquire(key: string): boolean {
    const n = this.#counts.get(key) ?? 0;
    if (n >= this.#max) return false;
    this.#counts.set(key, n + 1);
    return true;
  }

  /** Give back a slot of `key`. */
  release(key: string): void {
    const n = this.#counts.get(key) ?? 0;
    if (n <= 1) this.#counts.delete(key);
    else this.#counts.set(key, n - 1);
  }

  /** Slots held by `key`. */
  count(key: string): number {
    return this.#counts.get(key) ?? 0;
  }

  /** Keys holding at least one slot. */
  get size(): number {
    return this.#counts.size;
  }
}
