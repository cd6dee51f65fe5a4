/** The keyed token bucket and the slot counter of lib/rate_limit.ts, on a hand-driven clock. */

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { RateLimiter, SlotCounter } from "../lib/rate_limit.ts";

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

Deno.test("a bucket allows its burst at once, then refuses with the wait until one token is back", () => {
  const c = clock();
  const limiter = new RateLimiter({ burst: 3, perSecond: 2, now: c.now });
  for (let i = 0; i < 3; i++) deepStrictEqual(limiter.take("a"), { ok: true });
  deepStrictEqual(limiter.take("a"), { ok: false, retryAfterMs: 500 });
  c.advance(499);
  strictEqual(limiter.take("a").ok, false);
  c.advance(1);
  deepStrictEqual(limiter.take("a"), { ok: true });
  strictEqual(limiter.take("a").ok, false);
});

Deno.test("a take exactly the told wait later succeeds, whatever the float rounding of the rate", async (t) => {
  const table = [
    { name: "2 an hour", burst: 2, perSecond: 2 / 3600 },
    { name: "30 an hour", burst: 30, perSecond: 30 / 3600 },
    { name: "10 per 15 minutes", burst: 10, perSecond: 10 / 900 },
    { name: "3 a minute", burst: 3, perSecond: 3 / 60 },
  ];
  for (const { name, burst, perSecond } of table) {
    await t.step(name, () => {
      const c = clock();
      const limiter = new RateLimiter({ burst, perSecond, now: c.now });
      for (let i = 0; i < burst; i++) ok(limiter.take("k").ok);
      const refused = limiter.take("k");
      ok(!refused.ok);
      c.advance(refused.retryAfterMs);
      deepStrictEqual(limiter.take("k"), { ok: true }, `after ${refused.retryAfterMs} ms`);
    });
  }
});

Deno.test("keys have separate buckets and a refill never passes the burst", () => {
  const c = clock();
  const limiter = new RateLimiter({ burst: 2, perSecond: 1, now: c.now });
  ok(limiter.take("a").ok && limiter.take("a").ok);
  strictEqual(limiter.take("a").ok, false);
  ok(limiter.take("b").ok, "b has its own bucket");
  c.advance(60_000);
  ok(limiter.take("a").ok && limiter.take("a").ok);
  strictEqual(limiter.take("a").ok, false, "an hour of idling still refills only to the burst");
});

Deno.test("check answers like take without spending a token, and reset forgets a key", () => {
  const c = clock();
  const limiter = new RateLimiter({ burst: 1, perSecond: 1 / 60, now: c.now });
  ok(limiter.check("k").ok);
  ok(limiter.check("k").ok, "check spends nothing");
  ok(limiter.take("k").ok);
  deepStrictEqual(limiter.check("k"), { ok: false, retryAfterMs: 60_000 });
  limiter.reset("k");
  ok(limiter.take("k").ok);
});

Deno.test("a cost above the burst can never be paid", () => {
  const limiter = new RateLimiter({ burst: 2, perSecond: 1, now: clock().now });
  deepStrictEqual(limiter.take("k", 3), { ok: false, retryAfterMs: Infinity });
});

Deno.test("memory stays bounded: full buckets are pruned and the oldest keys dropped", async (t) => {
  await t.step("refilled buckets are pruned", () => {
    const c = clock();
    const limiter = new RateLimiter({ burst: 1, perSecond: 1, maxKeys: 100, now: c.now });
    for (let i = 0; i < 50; i++) limiter.take(`k${i}`);
    strictEqual(limiter.size, 50);
    c.advance(1000);
    limiter.prune();
    strictEqual(limiter.size, 0);
  });
  await t.step("a flood of distinct keys never holds more than maxKeys", () => {
    const c = clock();
    const limiter = new RateLimiter({ burst: 5, perSecond: 0.001, maxKeys: 100, now: c.now });
    for (let i = 0; i < 10_000; i++) {
      limiter.take(`ip${i}`);
      ok(limiter.size <= 100);
    }
    strictEqual(limiter.size, 100);
  });
  await t.step("a recently used key survives the eviction of older ones", () => {
    const c = clock();
    const limiter = new RateLimiter({ burst: 1, perSecond: 0.001, maxKeys: 3, now: c.now });
    limiter.take("hot");
    limiter.take("b");
    limiter.take("c");
    strictEqual(limiter.take("hot").ok, false, "touching hot keeps it newest");
    limiter.take("d");
    strictEqual(limiter.take("hot").ok, false, "hot is still limited after b was evicted");
  });
});

Deno.test("a limiter refuses nonsense settings", () => {
  throws(() => new RateLimiter({ burst: 0, perSecond: 1 }), RangeError);
  throws(() => new RateLimiter({ burst: 1, perSecond: 0 }), RangeError);
});

Deno.test("a slot counter caps live slots per key and forgets keys at zero", () => {
  const slots = new SlotCounter(2);
  ok(slots.acquire("u1") && slots.acquire("u1"));
  strictEqual(slots.acquire("u1"), false);
  ok(slots.acquire("u2"));
  strictEqual(slots.count("u1"), 2);
  slots.release("u1");
  ok(slots.acquire("u1"));
  slots.release("u1");
  slots.release("u1");
  slots.release("u2");
  strictEqual(slots.size, 0);
  slots.release("never");
  strictEqual(slots.count("never"), 0);
});
