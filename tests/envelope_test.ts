import { deepStrictEqual, rejects, strictEqual } from "node:assert/strict";
import { EnvelopeCodec, EnvelopeError, type EnvelopeErrorReason } from "../lib/envelope.ts";
import { message } from "./bus_contract.ts";

const SECRET = "a-test-cluster-secret-of-32-bytes";

function codec(nodeId: string, extra: Partial<Parameters<typeof EnvelopeCodec.create>[0]> = {}) {
  return EnvelopeCodec.create({ secret: SECRET, nodeId, now: () => 1_000_000, ...extra });
}

async function refused(p: Promise<unknown>, reason: EnvelopeErrorReason): Promise<void> {
  await rejects(p, (e: unknown) => e instanceof EnvelopeError && e.reason === reason);
}

Deno.test("EnvelopeCodec round-trips each kind and knows its own echo", async () => {
  const a = await codec("a", { epoch: "e1" });
  const b = await codec("b");
  const kinds = [
    { kind: "message", message: message(1), exceptSession: "s" },
    { kind: "member", groupId: 3, userId: 4 }, // as older nodes send it
    { kind: "member", groupId: 3, userId: 4, seq: 12 },
    { kind: "heads", heads: [{ conv: "g:3", seq: 9 }] },
  ] as const;
  for (const env of kinds) {
    const packet = await a.seal(env);
    strictEqual(packet.length <= 1200, true);
    deepStrictEqual(await b.open(packet), { self: false, nodeId: "a", epoch: "e1", payload: env });
    deepStrictEqual(await a.open(packet), { self: true, twin: false });
  }
});

Deno.test("EnvelopeCodec sends a message too big for a datagram by reference, never truncated", async () => {
  const a = await codec("a", { epoch: "e1" });
  const b = await codec("b");
  const big = message(7, "x".repeat(5000), "g:12");
  const packet = await a.seal({ kind: "message", message: big });
  strictEqual(packet.length <= 1200, true);
  deepStrictEqual(await b.open(packet), {
    self: false,
    nodeId: "a",
    epoch: "e1",
    payload: { kind: "message_ref", ref: { id: big.id, conv: "g:12", seq: 7 } },
  });
  // Anything else that does not fit is refused, not cut.
  const heads = Array.from({ length: 100 }, (_, i) => ({ conv: `g:${i + 1}`, seq: i }));
  await refused(a.seal({ kind: "heads", heads }), "oversized");
});

Deno.test("EnvelopeCodec refuses bad packets with a typed reason", async (t) => {
  const a = await codec("a");
  const good = await a.seal({ kind: "member", groupId: 1, userId: 2 });
  const other = await EnvelopeCodec.create({ secret: "some-other-secret-000000", nodeId: "a" });
  const flipped = good.slice();
  flipped[flipped.length - 2] = flipped[flipped.length - 2]! ^ 1;
  const cases: [string, Uint8Array, EnvelopeErrorReason][] = [
    ["unsigned JSON (the seed's datagram)", new TextEncoder().encode('{"cmd":10}'), "unsigned"],
    ["empty", new Uint8Array(0), "unsigned"],
    [
      "signed with another secret",
      await other.seal({ kind: "member", groupId: 1, userId: 2 }),
      "bad_signature",
    ],
    ["one bit flipped", flipped, "bad_signature"],
    ["truncated", good.subarray(0, good.length - 3), "bad_signature"],
    ["header only", good.subarray(0, 35), "malformed"],
    ["over the size limit", new Uint8Array(1201), "oversized"],
  ];
  for (const [name, packet, reason] of cases) {
    await t.step(`${name} → ${reason}`, async () => {
      const b = await codec("b");
      await refused(b.open(packet), reason);
    });
  }
});

Deno.test("EnvelopeCodec drops replays: a repeated counter, one below the window, an old send time", async () => {
  const a = await codec("a");
  const b = await codec("b", { window: 4 });
  const first = await a.seal({ kind: "member", groupId: 1, userId: 1 });
  const later = [];
  for (let i = 0; i < 5; i++) later.push(await a.seal({ kind: "member", groupId: 1, userId: 1 }));
  for (const p of later.slice(0, 4).reverse()) await b.open(p); // reordering inside the window is fine
  await refused(b.open(later[1]!), "replayed");
  await b.open(later[4]!);
  await refused(b.open(first), "replayed"); // counter 1 is now below the window of 4
  let clock = 1_000_000;
  const old = await (await codec("c", { now: () => clock })).seal({
    kind: "member",
    groupId: 1,
    userId: 1,
  });
  clock += 301_000;
  const c = await codec("d", { now: () => clock });
  await refused(c.open(old), "replayed");
  // A signed packet refused for its time names its node and how far its clock is off.
  const error = await c.open(old).catch((e) => e);
  deepStrictEqual(error.clock, { nodeId: "c", skewMs: -301_000 });
});

Deno.test("EnvelopeCodec tells a packet with this node's id from another start (a second node with the same CHAT_NODE_ID)", async () => {
  const a = await codec("a", { epoch: "e1" });
  const twin = await codec("a", { epoch: "e9" });
  const packet = await twin.seal({ kind: "member", groupId: 1, userId: 1 });
  deepStrictEqual(await a.open(packet), { self: true, twin: true });
});

Deno.test("EnvelopeCodec accepts a restarted node (new epoch) from counter 1 again", async () => {
  const b = await codec("b");
  const before = await codec("a", { epoch: "e1" });
  await b.open(await before.seal({ kind: "member", groupId: 1, userId: 1 }));
  const restarted = await codec("a", { epoch: "e2" });
  const p = await restarted.seal({ kind: "member", groupId: 1, userId: 2 });
  deepStrictEqual((await b.open(p)).self, false);
  await refused(b.open(p), "replayed");
});

Deno.test("EnvelopeCodec refuses a secret shorter than 16 bytes", async () => {
  await rejects(EnvelopeCodec.create({ secret: "short", nodeId: "a" }), RangeError);
});
