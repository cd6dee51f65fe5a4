/** WireBus's own bounds, with a transport the test drives by hand. */

import { deepStrictEqual, ok } from "node:assert/strict";
import { type PacketCodec, WireBus } from "../lib/bus_wire.ts";
import { EnvelopeCodec } from "../lib/envelope.ts";
import { captureLogs } from "./_logs.ts";
import { PushTransport } from "./_push_transport.ts";

Deno.test("WireBus drops and counts packets past its inbound queue bound, and handles the rest", async () => {
  const secret = "wire-test-secret-0123456789";
  const transport = new PushTransport();
  const bus = new WireBus({
    codec: await EnvelopeCodec.create({ secret, nodeId: "b" }),
    transport,
    loadMessage: () => Promise.resolve(undefined),
    maxInbound: 50,
  });
  const sender = await EnvelopeCodec.create({ secret, nodeId: "a" });
  const packets = [];
  for (let i = 0; i < 200; i++) {
    packets.push(await sender.seal({ kind: "member", groupId: 1, userId: i + 1 }));
  }
  const got: number[] = [];
  bus.subscribe((e) => {
    if (e.kind === "member") got.push(e.userId);
  });
  // One burst, faster than the bus handles packets: the first 50 queue.
  for (const p of packets.slice(0, 200)) transport.listener!.packet(p);
  for (let i = 0; i < 100 && got.length < 50; i++) await new Promise((r) => setTimeout(r, 5));
  deepStrictEqual(got, Array.from({ length: 50 }, (_, i) => i + 1));
  deepStrictEqual({ received: bus.stats().received, dropped: bus.stats().dropped }, {
    received: 50,
    dropped: 150,
  });
  // Room again once the queue drained.
  transport.listener!.packet(await sender.seal({ kind: "member", groupId: 1, userId: 999 }));
  for (let i = 0; i < 100 && got.length < 51; i++) await new Promise((r) => setTimeout(r, 5));
  deepStrictEqual(got.at(-1), 999);
  await bus.close();
});

/** A transport whose sends finish only when the test says so (or never). */
class HangingTransport extends PushTransport {
  readonly sends: PromiseWithResolvers<void>[] = [];
  override send(): Promise<void> {
    const sent = Promise.withResolvers<void>();
    this.sends.push(sent);
    return sent.promise;
  }
}

Deno.test("WireBus.publish settles when the transport took the packet, and within two head intervals if it hangs", async () => {
  const transport = new HangingTransport();
  // Wide enough that a slow machine's scheduling cannot reach the second tick early.
  const intervalMs = 500;
  const bus = new WireBus({
    codec: await EnvelopeCodec.create({ secret: "wire-test-secret-0123456789", nodeId: "a" }),
    transport,
    loadMessage: () => Promise.resolve(undefined),
    headIntervalMs: intervalMs,
  });
  const settled: string[] = [];
  const started = Date.now();
  // One at a time: seals run on a thread pool and may finish out of order,
  // so each send is matched to its publish by waiting for it.
  for (const [name, userId] of [["taken", 1], ["hung", 2]] as const) {
    const done = bus.publish({ kind: "member", groupId: 1, userId });
    deepStrictEqual(done instanceof Promise, true);
    void done?.then(() => settled.push(name));
    for (let i = 0; i < 200 && transport.sends.length < userId; i++) {
      await new Promise((r) => setTimeout(r, 1));
    }
    deepStrictEqual(transport.sends.length, userId);
  }
  transport.sends[0]!.resolve();
  for (let i = 0; i < 100 && settled.length < 1; i++) await new Promise((r) => setTimeout(r, 2));
  const firstAt = Date.now() - started;
  deepStrictEqual(settled, ["taken"], `after ${firstAt} ms`);
  for (let i = 0; i < 400 && settled.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  deepStrictEqual(settled, ["taken", "hung"]);
  const waited = Date.now() - started;
  deepStrictEqual(
    waited >= intervalMs - 10 && waited < 4 * intervalMs,
    true,
    `the hung publish waited ${waited} ms`,
  );
  await bus.close();
});

Deno.test("WireBus sends a keepalive each head interval it has nothing to send, and stops at close", async () => {
  const transport = new HangingTransport();
  const codec = await EnvelopeCodec.create({ secret: "wire-test-secret-0123456789", nodeId: "a" });
  const started = Date.now();
  const bus = new WireBus({
    codec,
    transport,
    loadMessage: () => Promise.resolve(undefined),
    headIntervalMs: 50,
  });
  for (let i = 0; i < 100 && transport.sends.length < 3; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  // A slow wake-up may let more intervals pass; never more than one send per interval
  // (+1 for a tick whose send is still sealing at the edge).
  const intervals = Math.floor((Date.now() - started) / 50);
  const sends = transport.sends.length;
  deepStrictEqual(
    sends >= 3 && sends <= intervals + 1,
    true,
    `${sends} sends in ${intervals} intervals`,
  );
  await bus.close();
  const after = transport.sends.length;
  await new Promise((r) => setTimeout(r, 120));
  deepStrictEqual(transport.sends.length, after, "nothing after close");
});

Deno.test("WireBus hands packets to the transport in publish order when seals finish out of order", async () => {
  const real = await EnvelopeCodec.create({ secret: "wire-test-secret-0123456789", nodeId: "a" });
  const firstSeal = Promise.withResolvers<void>();
  // The first seal finishes last, as a busy crypto thread pool can make it.
  const codec: PacketCodec = {
    nodeId: real.nodeId,
    seal: async (envelope) => {
      const packet = await real.seal(envelope);
      if (envelope.kind === "member" && envelope.userId === 1) await firstSeal.promise;
      return packet;
    },
    open: (packet) => real.open(packet),
  };
  const sent: number[] = [];
  const transport = new class extends PushTransport {
    override send(packet: Uint8Array): Promise<void> {
      const body = JSON.parse(new TextDecoder().decode(packet.subarray(35))); // after prefix and tag;
      if (body.k === "g") sent.push(body.u);
      return Promise.resolve();
    }
  }();
  const bus = new WireBus({
    codec,
    transport,
    loadMessage: () => Promise.resolve(undefined),
    headIntervalMs: 60_000,
  });
  const done = [1, 2, 3].map((userId) => bus.publish({ kind: "member", groupId: 1, userId }));
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
  deepStrictEqual(sent, [], "2 and 3 are sealed but wait for 1");
  firstSeal.resolve();
  await Promise.all(done);
  deepStrictEqual(sent, [1, 2, 3]);
  await bus.close();
});

Deno.test("WireBus checks the store when its own link comes back: what others announced meanwhile reached no one here", async () => {
  const transport = new PushTransport();
  const asked: number[] = [];
  const bus = new WireBus({
    codec: await EnvelopeCodec.create({ secret: "wire-test-secret-0123456789", nodeId: "b" }),
    transport,
    loadMessage: () => Promise.resolve(undefined),
    loadRecentHeads: (sinceTs) => {
      asked.push(sinceTs);
      return Promise.resolve([{ conv: "u:1:2", seq: 7 }]);
    },
    repairWindowMs: 60_000,
  });
  const heads: unknown[] = [];
  bus.subscribe((e) => {
    if (e.kind === "heads") heads.push(e.heads);
  });
  transport.listener!.reconnected(5_000_000);
  for (let i = 0; i < 100 && heads.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  deepStrictEqual(asked, [5_000_000 - 60_000], "from the break, minus the window");
  deepStrictEqual(heads, [[{ conv: "u:1:2", seq: 7 }]]);
  await bus.close();
});

Deno.test("WireBus logs a peer whose clock is off and a second node with its own id, once a minute each", async () => {
  const secret = "wire-test-secret-0123456789";
  const transport = new PushTransport();
  let now = 10_000_000;
  const bus = new WireBus({
    codec: await EnvelopeCodec.create({ secret, nodeId: "b", now: () => now }),
    transport,
    loadMessage: () => Promise.resolve(undefined),
    now: () => now,
  });
  const skewed = await EnvelopeCodec.create({ secret, nodeId: "a", now: () => now + 600_000 });
  const twin = await EnvelopeCodec.create({ secret, nodeId: "b", epoch: "other" });
  await using logs = await captureLogs();
  const feed = async (codec: EnvelopeCodec, n: number) => {
    for (let i = 0; i < n; i++) {
      transport.listener!.packet(await codec.seal({ kind: "heads", heads: [] }));
    }
    await new Promise((r) => setTimeout(r, 50));
  };
  await feed(skewed, 3);
  await feed(twin, 3);
  const lines = () =>
    logs.records.filter((r) => r.level !== "debug").map((r) => r.message.map(String).join(""));
  deepStrictEqual(lines().length, 2, lines().join("\n"));
  ok(lines()[0]!.startsWith("Node a's clock is 600 s off"), lines()[0]);
  ok(lines()[1]!.startsWith("Another node runs with this node's id b "), lines()[1]);
  now += 61_000;
  await feed(skewed, 1);
  deepStrictEqual(lines().length, 3, "again after a minute");
  deepStrictEqual(bus.stats().replayed, 4);
  await bus.close();
});
