/**
 * Chat nodes joined by an in-process packet hub instead of a kernel: every
 * transport hears every other's packets, minus a seeded share (`loss`) and
 * minus everything from a transport the test has cut off.
 */

import { serve } from "../lib/ws/serve.ts";
import { Auth } from "../lib/auth.ts";
import { storeMessageLoader, storeRecentHeadsLoader } from "../lib/bus.ts";
import type { Transport, TransportListener } from "../lib/bus_transport.ts";
import { WireBus } from "../lib/bus_wire.ts";
import { ChatService } from "../lib/chat_service.ts";
import { EnvelopeCodec } from "../lib/envelope.ts";
import { chatRoutes } from "../lib/http/chat_route.ts";
import type { Store } from "../lib/store.ts";
import { TestSocket, testUser } from "./_chat_helpers.ts";

/** Every transport of the hub hears every other's packets, minus a seeded share. */
export class LossyHub {
  #listeners = new Map<LossyTransport, TransportListener>();
  #seed: number;
  lost = 0;

  constructor(readonly loss: number, seed: number) {
    this.#seed = seed;
  }

  #random(): number {
    // mulberry32
    let t = (this.#seed += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  join(t: LossyTransport, listener: TransportListener): void {
    this.#listeners.set(t, listener);
  }

  leave(t: LossyTransport): void {
    this.#listeners.delete(t);
  }

  /** Transports whose packets go nowhere (a dead or cut-off node). */
  readonly cut = new Set<LossyTransport>();

  send(from: LossyTransport, packet: Uint8Array): void {
    if (this.cut.has(from)) {
      this.lost++;
      return;
    }
    for (const [t, listener] of this.#listeners) {
      if (t === from) continue;
      if (this.#random() < this.loss) {
        this.lost++;
        continue;
      }
      setTimeout(() => listener.packet(packet.slice()), 0);
    }
  }
}

export class LossyTransport implements Transport {
  constructor(readonly hub: LossyHub) {}
  start(listener: TransportListener): void {
    this.hub.join(this, listener);
  }
  send(packet: Uint8Array): Promise<void> {
    this.hub.send(this, packet);
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.hub.leave(this);
    return Promise.resolve();
  }
  ping(): Promise<void> {
    return Promise.resolve();
  }
}

/** One chat node on the hub. */
export interface HubNode {
  readonly bus: WireBus;
  readonly transport: LossyTransport;
  readonly chat: ChatService;
  readonly port: number;
  /** Open a /chat socket for `user`, catch up (`all`) and wait for the end of it. */
  connect(user: { id: number; token: string }): Promise<TestSocket>;
  close(): Promise<void>;
}

/** Start a node per id on `hub`, all over `store`; `bus` options go to each WireBus. */
export async function startHubNodes(
  store: Store,
  hub: LossyHub,
  nodeIds: readonly string[],
  bus: { headIntervalMs: number; repairFromStore?: boolean; headsActiveMs?: number },
): Promise<HubNode[]> {
  const auth = new Auth({ store, tokenTtlSeconds: 3600, iterations: 1000 });
  const nodes: HubNode[] = [];
  for (const nodeId of nodeIds) {
    const codec = await EnvelopeCodec.create({ secret: "loss-test-secret-0123456789", nodeId });
    const transport = new LossyTransport(hub);
    const wire = new WireBus({
      codec,
      transport,
      loadMessage: storeMessageLoader(store),
      ...(bus.repairFromStore === true ? { loadRecentHeads: storeRecentHeadsLoader(store) } : {}),
      headIntervalMs: bus.headIntervalMs,
      ...(bus.headsActiveMs === undefined ? {} : { heads: { activeMs: bus.headsActiveMs } }),
    });
    const chat = new ChatService({ store, bus: wire });
    const ac = new AbortController();
    const server = serve({
      hostname: "127.0.0.1",
      port: 0,
      signal: ac.signal,
      fetch: chatRoutes({ chat, auth, config: { origins: [] } }).fetch,
    });
    const sockets: TestSocket[] = [];
    const port = server.addr.port;
    nodes.push({
      bus: wire,
      transport,
      chat,
      port,
      async connect(user) {
        const s = new TestSocket(
          `ws://127.0.0.1:${port}/chat?id=${user.id}&token=${encodeURIComponent(user.token)}`,
        );
        sockets.push(s);
        await s.opened;
        s.send({ cmd: 30, all: true });
        await s.waitFor((f) => f["cmd"] === 31);
        return s;
      },
      async close() {
        await Promise.all(sockets.map((s) => s.close()));
        chat.close();
        await wire.close();
        ac.abort();
        await server.finished;
      },
    });
  }
  return nodes;
}

type User = { id: number; token: string };

/**
 * Ann, Bob and Cat with login tokens; Ann and Bob are friends; Ann owns
 * group `g`, which `members` join.
 */
export async function hubCast(
  store: Store,
  members: readonly ("bob" | "cat")[],
): Promise<{ ann: User; bob: User; cat: User; g: { id: number } }> {
  const auth = new Auth({ store, tokenTtlSeconds: 3600, iterations: 1000 });
  const [ann, bob, cat] = [
    await testUser(store, auth, "13900000001", "ann"),
    await testUser(store, auth, "13900000002", "bob"),
    await testUser(store, auth, "13900000003", "cat"),
  ];
  await store.addFriendship(ann.id, bob.id, 0);
  const g = await store.createGroup(
    { name: "g", ownerId: ann.id, icon: "", cate: 0, memo: "" },
    { now: 0, maxPerOwner: 5 },
  );
  for (const m of members) await store.joinGroup((m === "bob" ? bob : cat).id, g.id, 0);
  return { ann, bob, cat, g };
}
