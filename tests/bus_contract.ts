/**
 * The contract every {@linkcode Bus} keeps, run against the local, UDP and
 * Redis buses (see bus_test.ts). A "cluster" is two nodes' buses; for the
 * local bus both are the same object.
 */

import { deepStrictEqual, rejects, strictEqual } from "node:assert/strict";
import type { Bus, BusEnvelope, MessageLoader, MessageRef } from "../lib/bus.ts";
import type { StoredMessage } from "../lib/store.ts";

/** Two nodes' buses and how to release them. */
export interface BusPair extends AsyncDisposable {
  readonly a: Bus;
  readonly b: Bus;
  /** Whether `a` and `b` are the same in-process bus. */
  readonly local: boolean;
}

/** Makes a pair whose network buses load referenced messages with `loadMessage`. */
export type PairFactory = (loadMessage: MessageLoader) => Promise<BusPair>;

/** A stored message for the tests. */
export function message(seq: number, content = `m${seq}`, conv = "u:1:2"): StoredMessage {
  return {
    id: 1000 + seq,
    userid: 1,
    cmd: 10,
    dstid: 2,
    media: 1,
    content,
    pic: "",
    url: "",
    memo: "",
    amount: 0,
    cid: `c${seq}`,
    conv,
    seq,
    ts: 1_700_000_000_000 + seq,
  };
}

/** A loader over an in-memory list. */
export function memoryLoader(rows: StoredMessage[]): MessageLoader {
  return (ref: MessageRef) =>
    Promise.resolve(rows.find((m) => m.id === ref.id && m.conv === ref.conv && m.seq === ref.seq));
}

/** Collects what a bus hands its subscriber. */
export class Inbox {
  readonly got: BusEnvelope[] = [];
  readonly unsubscribe: () => void;

  constructor(bus: Bus) {
    this.unsubscribe = bus.subscribe((e) => this.got.push(e));
  }

  /** Wait until `pred` holds (polling), or fail after `ms`. */
  async until(pred: (got: BusEnvelope[]) => boolean, ms = 3000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred(this.got)) {
      if (Date.now() > end) throw new Error(`Timed out; got ${JSON.stringify(this.got)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

function kinds(got: BusEnvelope[], kind: string): BusEnvelope[] {
  return got.filter((e) => e.kind === kind);
}

/** Register the contract tests for one bus kind. */
export function busContract(name: string, makePair: PairFactory): void {
  Deno.test(`${name} bus: a publish reaches this node at once and the other node once`, async () => {
    await using pair = await makePair(memoryLoader([]));
    const onA = new Inbox(pair.a);
    const onB = pair.local ? onA : new Inbox(pair.b);
    pair.a.publish({ kind: "message", message: message(1), exceptSession: "s1" });
    // Local delivery is synchronous: no waiting for an echo.
    strictEqual(kinds(onA.got, "message").length, 1);
    await onB.until((g) => kinds(g, "message").length >= 1);
    await new Promise((r) => setTimeout(r, 100));
    deepStrictEqual(kinds(onB.got, "message"), [
      { kind: "message", message: message(1), exceptSession: "s1" },
    ]);
    strictEqual(kinds(onA.got, "message").length, 1, "no echo of our own envelope");
  });

  Deno.test(`${name} bus: membership events travel to the other node`, async () => {
    await using pair = await makePair(memoryLoader([]));
    const onB = new Inbox(pair.b);
    pair.a.publish({ kind: "member", groupId: 7, userId: 3 });
    await onB.until((g) => kinds(g, "member").length >= 1);
    deepStrictEqual(kinds(onB.got, "member")[0], { kind: "member", groupId: 7, userId: 3 });
  });

  Deno.test(`${name} bus: a message too big for one packet arrives whole`, async () => {
    const big = message(2, "长".repeat(16_384));
    await using pair = await makePair(memoryLoader([big]));
    const onB = new Inbox(pair.b);
    pair.a.publish({ kind: "message", message: big });
    await onB.until((g) => kinds(g, "message").length >= 1);
    deepStrictEqual(kinds(onB.got, "message")[0], { kind: "message", message: big });
  });

  Deno.test(`${name} bus: unsubscribe and close stop delivery; publish after close is a no-op`, async () => {
    await using pair = await makePair(memoryLoader([]));
    const onA = new Inbox(pair.a);
    onA.unsubscribe();
    pair.a.publish({ kind: "member", groupId: 1, userId: 1 });
    strictEqual(onA.got.length, 0);
    const again = new Inbox(pair.a);
    await pair.a.close();
    await pair.a.close(); // idempotent
    pair.a.publish({ kind: "member", groupId: 1, userId: 2 });
    await new Promise((r) => setTimeout(r, 50));
    strictEqual(again.got.length, 0);
  });

  Deno.test(`${name} bus: ping() resolves while open and rejects after close`, async () => {
    await using pair = await makePair(memoryLoader([]));
    await pair.a.ping();
    await pair.b.ping();
    await pair.a.close();
    await rejects(pair.a.ping(), Error);
    if (!pair.local) await pair.b.ping(); // the other node's bus is unaffected
  });

  Deno.test(`${name} bus: stats() counts what was sent`, async () => {
    await using pair = await makePair(memoryLoader([]));
    const onB = new Inbox(pair.b);
    const before = pair.a.stats().sent;
    pair.a.publish({ kind: "member", groupId: 2, userId: 5 });
    await onB.until((g) => kinds(g, "member").length >= 1);
    await new Promise((r) => setTimeout(r, 50));
    strictEqual(pair.a.stats().sent > before, true);
    const s = pair.b.stats();
    for (const k of ["badSignature", "replayed", "malformed", "oversized"] as const) {
      strictEqual(s[k], 0, k);
    }
  });
}
