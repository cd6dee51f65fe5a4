/**
 * Fuzzing the cluster bus receive path: 100,000 hostile datagrams go through
 * a real WireBus (lib/bus_wire.ts → lib/envelope.ts) on a packet transport.
 * Every one must be dropped and counted under the reason it deserves, and
 * none may reach a subscriber.
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import type { BusEnvelope, BusStats } from "../../lib/bus.ts";
import { WireBus } from "../../lib/bus_wire.ts";
import { EnvelopeCodec, type EnvelopeErrorReason } from "../../lib/envelope.ts";
import { message } from "../bus_contract.ts";
import { PushTransport } from "../_push_transport.ts";
import { catchPrinted } from "../_printed.ts";
import { deepJson, NASTY_CHARS, Rng, SEED, WRONG_VALUES } from "./_fuzz.ts";

const SECRET = "reliability-fuzz-cluster-secret-0001";
const NOW = 1_800_000_000_000;
const COUNT = 100_000;
const MAX = 1200;
const PREFIX = [0x4c, 0x43, 0x01];

/** Packs `body` behind the prefix and a correct tag: what a node holding the secret could send. */
async function signedBody(key: CryptoKey, body: Uint8Array): Promise<Uint8Array> {
  const signed = new Uint8Array(3 + body.length);
  signed.set(PREFIX, 0);
  signed.set(body, 3);
  const tag = new Uint8Array(await crypto.subtle.sign("HMAC", key, signed));
  const packet = new Uint8Array(35 + body.length);
  packet.set(PREFIX, 0);
  packet.set(tag, 3);
  packet.set(body, 35);
  return packet;
}

/** A body that parses as JSON but breaks exactly one rule of the envelope format. */
function malformedBody(rng: Rng, counter: number): string {
  const head: Record<string, unknown> = { v: 1, n: "evil", e: "e1", c: counter, t: NOW };
  const kinds: Record<string, unknown>[] = [
    { k: "m", m: { ...message(counter) } },
    { k: "r", r: { id: 1, conv: "u:1:2", seq: 1 } },
    { k: "g", g: 1, u: 2 },
    { k: "h", h: [["g:1", 3]] },
  ];
  const body: Record<string, unknown> = { ...head, ...rng.pick(kinds) };
  const wrong = () => {
    let v = rng.pick(WRONG_VALUES);
    while (typeof v === "number" && Number.isSafeInteger(v)) v = rng.pick(WRONG_VALUES);
    return v;
  };
  const breakers: (() => void)[] = [
    () => (body["v"] = rng.pick([0, 2, "1", null, [1]])),
    () => delete body["n"],
    () => (body["n"] = rng.pick([1, null, [], {}])),
    () => (body["e"] = rng.pick([1, null, [], {}])),
    () => (body["c"] = rng.pick([0, -1, -1e9])),
    () => (body["c"] = wrong()),
    () => (body["t"] = wrong()),
    () => (body["k"] = rng.pick(["x", "", "M", null, 1, ["m"]])),
    () => (body["x"] = rng.pick([1, null, [], {}, true])),
    () => {
      body["k"] = "m";
      const m: Record<string, unknown> = { ...message(1) };
      const field = rng.pick(Object.keys(m));
      if (rng.next() < 0.3) delete m[field];
      else m[field] = typeof m[field] === "string" ? rng.pick([1, null, [], {}]) : wrong();
      body["m"] = m;
    },
    () => ((body["k"] = "m"), (body["m"] = rng.pick([null, 1, "m", [message(1)]]))),
    () => ((body["k"] = "r"), (body["r"] = rng.pick([null, {}, { id: "1", conv: "c", seq: 1 }]))),
    () => ((body["k"] = "g"), (body["g"] = wrong())),
    () => ((body["k"] = "h"), (body["h"] = rng.pick([null, {}, "h", [["g:1"]], [[1, 2]], [3]]))),
  ];
  rng.pick(breakers)();
  return JSON.stringify(body);
}

/** Bodies that are not an envelope object at all. */
function junkBody(rng: Rng): Uint8Array {
  const enc = new TextEncoder();
  switch (rng.int(6)) {
    case 0:
      return rng.bytes(1 + rng.int(400));
    case 1:
      return new Uint8Array([0x7b, 0xc3, 0x28, 0xff, 0xfe, 0x7d]); // "{" + invalid UTF-8 + "}"
    case 2:
      return enc.encode(deepJson(1 + rng.int(550), rng.next() < 0.5));
    case 3:
      return enc.encode(rng.pick(["null", "1", '"s"', "[]", "true", "{", "{}}"]));
    case 4:
      return enc.encode(`{"v":1,"n":"${rng.text(8)}`);
    default:
      return enc.encode(rng.text(1 + rng.int(50)));
  }
}

Deno.test(
  `Bus fuzz: ${COUNT} hostile datagrams are all dropped and counted by reason, none delivered (seed ${SEED})`,
  async () => {
    using printed = catchPrinted();
    const rng = new Rng(SEED);
    const receiver = await EnvelopeCodec.create({ secret: SECRET, nodeId: "b", now: () => NOW });
    const sender = await EnvelopeCodec.create({ secret: SECRET, nodeId: "a", now: () => NOW });
    const stale = await EnvelopeCodec.create({
      secret: SECRET,
      nodeId: "s",
      now: () => NOW - 3_600_000,
    });
    const stranger = await EnvelopeCodec.create({
      secret: "not-the-cluster-secret-at-all-000",
      nodeId: "a",
      now: () => NOW,
    });
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(SECRET),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const transport = new PushTransport();
    const bus = new WireBus({
      codec: receiver,
      transport,
      loadMessage: () => Promise.resolve(undefined),
      headIntervalMs: 3_600_000,
      now: () => NOW,
    });
    const delivered: BusEnvelope[] = [];
    bus.subscribe((e) => delivered.push(e));
    // Packets are fed in batches, each handled before the next (as a socket would pace them):
    // one unbounded synchronous burst makes Deno's async crypto ops slow down quadratically.
    let fed = 0;
    const handled = () => {
      const s = bus.stats();
      return s.received + s.dropped + s.badSignature + s.malformed + s.oversized + s.replayed;
    };
    const feed = async (p: Uint8Array) => {
      transport.listener!.packet(p);
      if (++fed % 256 !== 0) return;
      while (handled() < fed) await new Promise((r) => setTimeout(r, 0));
    };

    // Twenty genuine packets first: they are delivered once, and later replays of them must not be.
    const genuine: Uint8Array[] = [];
    for (let i = 1; i <= 20; i++) {
      genuine.push(await sender.seal({ kind: "member", groupId: i, userId: i }));
    }
    const strangers: Uint8Array[] = [];
    for (let i = 0; i < 50; i++) {
      strangers.push(await stranger.seal({ kind: "message", message: message(i + 1) }));
    }
    for (const p of genuine) await feed(p);

    const expected: Record<EnvelopeErrorReason, number> = {
      oversized: 0,
      unsigned: 0,
      bad_signature: 0,
      malformed: 0,
      replayed: 0,
    };
    const byLength = (p: Uint8Array, otherwise: EnvelopeErrorReason): EnvelopeErrorReason =>
      p.length > MAX ? "oversized" : otherwise;
    for (let i = 0; i < COUNT; i++) {
      let packet: Uint8Array;
      let reason: EnvelopeErrorReason;
      switch (i % 9) {
        case 0: { // random bytes that do not start with the prefix
          packet = rng.bytes(rng.int(1500));
          if (packet.length > 0 && packet[0] === 0x4c) packet[0] = 0x4d;
          reason = byLength(packet, "unsigned");
          break;
        }
        case 1: { // the seed's unsigned JSON datagram, forged
          const forged = { id: rng.int(1e6), userid: rng.int(100), cmd: 10, dstid: rng.int(100) };
          packet = new TextEncoder().encode(
            JSON.stringify({ ...forged, content: rng.text(rng.int(40)) }),
          );
          reason = byLength(packet, "unsigned");
          break;
        }
        case 2: { // the prefix, then a made-up tag and body
          packet = new Uint8Array([...PREFIX, ...rng.bytes(33 + rng.int(1200))]);
          reason = byLength(packet, "bad_signature");
          break;
        }
        case 3: { // a genuine packet with one bit flipped after the prefix
          packet = rng.pick(genuine).slice();
          const at = 3 + rng.int(packet.length - 3);
          packet[at] = packet[at]! ^ (1 << rng.int(8));
          reason = "bad_signature";
          break;
        }
        case 4: { // a genuine packet cut short
          const g = rng.pick(genuine);
          packet = g.slice(0, rng.int(g.length));
          reason = packet.length < 3
            ? "unsigned"
            : packet.length <= 35
            ? "malformed"
            : "bad_signature";
          break;
        }
        case 5: // sealed with another secret
          packet = rng.pick(strangers);
          reason = "bad_signature";
          break;
        case 6: { // correctly signed, but the body breaks the format
          const body = rng.next() < 0.7
            ? new TextEncoder().encode(malformedBody(rng, 1 + i))
            : junkBody(rng);
          packet = await signedBody(key, body);
          reason = byLength(packet, "malformed");
          break;
        }
        case 7: // a replay of a genuine packet already delivered
          packet = rng.pick(genuine);
          reason = "replayed";
          break;
        default: { // genuine and fresh from its node, but sent an hour ago
          const extra = NASTY_CHARS.join("").slice(0, rng.int(30));
          packet = await stale.seal({ kind: "heads", heads: [{ conv: `g:1${extra}`, seq: i }] });
          reason = "replayed";
          break;
        }
      }
      expected[reason]++;
      await feed(packet);
    }
    await bus.close();

    const stats: BusStats = bus.stats();
    strictEqual(delivered.length, 20, `seed ${SEED}: only the 20 genuine packets are delivered`);
    printed.assertNone(`seed ${SEED}`);
    deepStrictEqual(
      {
        received: stats.received,
        badSignature: stats.badSignature,
        malformed: stats.malformed,
        oversized: stats.oversized,
        replayed: stats.replayed,
        dropped: stats.dropped,
      },
      {
        received: 20,
        badSignature: expected.unsigned + expected.bad_signature,
        malformed: expected.malformed,
        oversized: expected.oversized,
        replayed: expected.replayed,
        dropped: 0,
      },
      `seed ${SEED}`,
    );
    strictEqual(
      stats.badSignature + stats.malformed + stats.oversized + stats.replayed,
      COUNT,
      "every hostile datagram is counted once",
    );
  },
);
