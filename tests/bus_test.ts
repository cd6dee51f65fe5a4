import { deepStrictEqual, rejects, strictEqual } from "node:assert/strict";
import { LocalBus } from "../lib/bus_local.ts";
import { openUdpBus, type UdpBus } from "../lib/bus_udp.ts";
import { openRedisBus } from "../lib/bus_redis.ts";
import type { MessageLoader } from "../lib/bus.ts";
import { EnvelopeCodec } from "../lib/envelope.ts";
import { busContract, Inbox, memoryLoader, message } from "./bus_contract.ts";
import { freeTcpPort, redisUrl, startRedis, stopRedis, waitForTcp } from "./_redis_helpers.ts";

const SECRET = "a-test-cluster-secret-of-32-bytes";
/** Loopback broadcast: sockets bound to it receive only datagrams sent to it. */
const BCAST = "127.255.255.255";

async function udpPair(loadMessage: MessageLoader, headIntervalMs = 1000) {
  const common = { secret: SECRET, broadcast: BCAST, hostname: BCAST, loadMessage, headIntervalMs };
  const a = await openUdpBus({ ...common, nodeId: "node-a", port: 0 });
  const b = await openUdpBus({ ...common, nodeId: "node-b", port: a.port });
  return {
    a,
    b,
    local: false,
    async [Symbol.asyncDispose]() {
      await a.close();
      await b.close();
    },
  };
}

busContract("local", () => {
  const bus = new LocalBus();
  return Promise.resolve({
    a: bus,
    b: bus,
    local: true,
    [Symbol.asyncDispose]: () => bus.close(),
  });
});

busContract("UDP", (loadMessage) => udpPair(loadMessage));

if (redisUrl() !== undefined) {
  busContract("Redis", async (loadMessage) => {
    const channel = `lanchat:test:${crypto.randomUUID()}`;
    const common = { url: redisUrl()!, secret: SECRET, loadMessage, channel };
    const a = await openRedisBus({ ...common, nodeId: "node-a" });
    const b = await openRedisBus({ ...common, nodeId: "node-b" });
    return {
      a,
      b,
      local: false,
      async [Symbol.asyncDispose]() {
        await a.close();
        await b.close();
      },
    };
  });
} else {
  Deno.test("Redis bus contract (skipped: set CHAT_TEST_REDIS_URL)", { ignore: true }, () => {});
}

Deno.test({
  name: "UDP bus ping() rejects while its sends fail, and counts them as dropped",
  // The send fails because this process may not send to 127.0.0.3 (NotCapable).
  ignore: (await Deno.permissions.query({ name: "net", host: "127.0.0.3:9" })).state === "granted",
  async fn() {
    const bus = await openUdpBus({
      secret: SECRET,
      nodeId: "node-a",
      port: 0,
      hostname: "127.0.0.1",
      broadcast: "127.0.0.3",
      loadMessage: memoryLoader([]),
    });
    try {
      await bus.ping();
      bus.publish({ kind: "member", groupId: 1, userId: 1 });
      const end = Date.now() + 2000;
      while (bus.stats().dropped === 0 && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 10));
      }
      strictEqual(bus.stats().dropped, 1);
      strictEqual(bus.stats().sent, 0);
      await rejects(bus.ping(), /UDP send failed/);
    } finally {
      await bus.close();
    }
  },
});

/** Send raw bytes to the UDP bus's port, as an attacker on the LAN would. */
async function sendRaw(bus: UdpBus, packets: Uint8Array[]): Promise<void> {
  const sock = Deno.listenDatagram({
    transport: "udp",
    hostname: BCAST,
    port: bus.port,
    reuseAddress: true,
  });
  try {
    for (const p of packets) {
      await sock.send(p, { transport: "udp", hostname: BCAST, port: bus.port });
    }
  } finally {
    sock.close();
  }
}

Deno.test("UDP bus drops and counts unsigned, forged, replayed, oversized and malformed datagrams", async () => {
  await using pair = await udpPair(memoryLoader([]));
  const onB = new Inbox(pair.b);
  const enc = new TextEncoder();
  const forger = await EnvelopeCodec.create({
    secret: "another-secret-entirely-123",
    nodeId: "evil",
  });
  const peer = await EnvelopeCodec.create({ secret: SECRET, nodeId: "node-c" });
  const good = await peer.seal({ kind: "member", groupId: 9, userId: 9 });
  const truncated = good.subarray(0, good.length - 5);
  const junk = await signedJunk(SECRET);
  await sendRaw(pair.b, [
    enc.encode(JSON.stringify({ cmd: 10, dstid: 2, content: "forged like the seed" })),
    await forger.seal({ kind: "member", groupId: 1, userId: 1 }),
    truncated,
    new Uint8Array(1300).fill(1),
    junk,
    good,
    good, // replay
  ]);
  await onB.until((g) => g.some((e) => e.kind === "member"));
  await new Promise((r) => setTimeout(r, 150));
  deepStrictEqual(onB.got.filter((e) => e.kind === "member"), [
    { kind: "member", groupId: 9, userId: 9 },
  ]);
  const s = pair.b.stats();
  strictEqual(s.badSignature, 3, "unsigned, wrong key, truncated");
  strictEqual(s.oversized, 1);
  strictEqual(s.malformed, 1);
  strictEqual(s.replayed, 1);
  strictEqual(s.received, 1);
});

/** A correctly signed packet whose body is not an envelope. */
async function signedJunk(secret: string): Promise<Uint8Array> {
  const body = new TextEncoder().encode('{"v":1,"n":"x","e":"1","c":1,"t":1,"k":"zzz"}');
  const prefix = new Uint8Array([0x4c, 0x43, 0x01]);
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const signed = new Uint8Array([...prefix, ...body]);
  const tag = new Uint8Array(await crypto.subtle.sign("HMAC", key, signed));
  return new Uint8Array([...prefix, ...tag, ...body]);
}

Deno.test("UDP bus announces the heads of conversations it published in", async () => {
  await using pair = await udpPair(memoryLoader([]), 50);
  const onB = new Inbox(pair.b);
  pair.a.publish({ kind: "message", message: message(4) });
  await onB.until((g) => g.some((e) => e.kind === "heads"));
  const heads = onB.got.find((e) => e.kind === "heads");
  deepStrictEqual(heads, { kind: "heads", heads: [{ conv: "u:1:2", seq: 4 }] });
});

Deno.test("UDP bus refuses to start on a port another program holds without address reuse", async () => {
  const holder = Deno.listenDatagram({ transport: "udp", hostname: BCAST, port: 0 });
  try {
    const port = (holder.addr as Deno.NetAddr).port;
    let failed = false;
    try {
      const bus = await openUdpBus({
        secret: SECRET,
        nodeId: "n",
        port,
        broadcast: BCAST,
        hostname: BCAST,
        loadMessage: memoryLoader([]),
      });
      await bus.close();
    } catch (error) {
      failed = error instanceof Deno.errors.AddrInUse;
    }
    strictEqual(failed, true);
  } finally {
    holder.close();
  }
});

Deno.test({
  name: "Redis bus reconnects after a Redis restart and drops (counts) what was sent meanwhile",
  ignore: redisUrl() === undefined,
  async fn() {
    const port = freeTcpPort();
    let redis = startRedis(port);
    try {
      await waitForTcp(port);
      const common = {
        url: `redis://127.0.0.1:${port}`,
        secret: SECRET,
        loadMessage: memoryLoader([]),
      };
      await using pair = {
        a: await openRedisBus({ ...common, nodeId: "node-a" }),
        b: await openRedisBus({ ...common, nodeId: "node-b", headIntervalMs: 100 }),
        async [Symbol.asyncDispose]() {
          await this.a.close();
          await this.b.close();
        },
      };
      const onB = new Inbox(pair.b);
      pair.a.publish({ kind: "member", groupId: 1, userId: 1 });
      await onB.until((g) => g.length >= 1);
      await stopRedis(redis);
      pair.a.publish({ kind: "member", groupId: 2, userId: 2 });
      await new Promise((r) => setTimeout(r, 200));
      strictEqual(pair.a.stats().dropped >= 1, true, "send during the outage is counted");
      redis = startRedis(port);
      await waitForTcp(port);
      // The clients reconnect on their own (backoff up to 2 s) and subscribe again.
      const end = Date.now() + 10_000;
      let n = 3;
      while (!onB.got.some((e) => e.kind === "member" && e.groupId >= 3)) {
        if (Date.now() > end) throw new Error("No delivery after the restart");
        pair.a.publish({ kind: "member", groupId: n++, userId: 3 });
        await new Promise((r) => setTimeout(r, 200));
      }
      strictEqual(onB.got.some((e) => e.kind === "member" && e.groupId === 2), false);
    } finally {
      await stopRedis(redis);
    }
  },
});

Deno.test({
  name:
    "Redis bus ping() is a real PING: it times out while Redis hangs and rejects once it is gone",
  ignore: redisUrl() === undefined,
  async fn() {
    const port = freeTcpPort();
    const redis = startRedis(port);
    try {
      await waitForTcp(port);
      const bus = await openRedisBus({
        url: `redis://127.0.0.1:${port}`,
        secret: SECRET,
        nodeId: "node-a",
        loadMessage: memoryLoader([]),
        pingTimeoutMs: 200,
      });
      try {
        await bus.ping();
        redis.kill("SIGSTOP"); // the server hangs: the TCP link stays up, no PONG comes
        const started = Date.now();
        await rejects(bus.ping(), /did not answer in 200 ms/);
        strictEqual(Date.now() - started < 1000, true, "ping gives up after its timeout");
        redis.kill("SIGCONT");
        await bus.ping();
        await stopRedis(redis);
        await rejects(bus.ping());
      } finally {
        await bus.close();
      }
    } finally {
      try {
        redis.kill("SIGCONT"); // in case an assertion failed while it hung
      } catch { /* already exited */ }
      await stopRedis(redis);
    }
  },
});
