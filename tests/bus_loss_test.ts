/**
 * Gap repair end to end, without a kernel's help: two chat nodes over one
 * store, joined by a signed-envelope bus whose transport drops 30% of the
 * packets (a seeded random). Every session still gets every message once,
 * in seq order — holes are filled when a later seq arrives, the lost tail
 * by the nodes' head announcements, and a conversation's first message by
 * following new conversations from seq 1.
 */

import { deepStrictEqual } from "node:assert/strict";
import { Auth } from "../lib/auth.ts";
import { storeMessageLoader } from "../lib/bus.ts";
import { type Transport, type TransportListener, WireBus } from "../lib/bus_wire.ts";
import { ChatService } from "../lib/chat_service.ts";
import { EnvelopeCodec } from "../lib/envelope.ts";
import { chatRoutes } from "../lib/http/chat_route.ts";
import { openTestStore, TestSocket } from "./_chat_helpers.ts";

/** Every transport of the hub hears every other's packets, minus a seeded share. */
class LossyHub {
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

  send(from: LossyTransport, packet: Uint8Array): void {
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

class LossyTransport implements Transport {
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

Deno.test("sessions on two nodes get every message once, in order, over a bus losing 30%", async () => {
  const { store, dispose } = await openTestStore("sqlite");
  const auth = new Auth({ store, tokenTtlSeconds: 3600, iterations: 1000 });
  const hub = new LossyHub(0.3, 42);
  const nodes: {
    bus: WireBus;
    chat: ChatService;
    ac: AbortController;
    server: Deno.HttpServer<Deno.NetAddr>;
  }[] = [];
  for (const nodeId of ["a", "b"]) {
    const codec = await EnvelopeCodec.create({ secret: "loss-test-secret-0123456789", nodeId });
    const bus = new WireBus({
      codec,
      transport: new LossyTransport(hub),
      loadMessage: storeMessageLoader(store),
      headIntervalMs: 100,
    });
    const chat = new ChatService({ store, bus });
    const ac = new AbortController();
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
      chatRoutes({ chat, auth, config: { origins: [] } }).fetch,
    );
    nodes.push({ bus, chat, ac, server });
  }
  const sockets: TestSocket[] = [];
  try {
    const users = [];
    for (const name of ["ann", "bob", "cat"]) {
      const u = await store.createUser({
        mobile: `1390000${name.length}${users.length}00`,
        passwordHash: "x",
        nickname: name,
        avatar: "",
        sex: "U",
        memo: "",
      }, Date.now());
      users.push({ id: u.id, token: await auth.issueToken(u.id) });
    }
    const [ann, bob, cat] = users as [typeof users[0], typeof users[0], typeof users[0]];
    await store.addFriendship(ann.id, bob.id, 0);
    const g = await store.createGroup(
      { name: "g", ownerId: ann.id, icon: "", cate: 0, memo: "" },
      { now: 0, maxPerOwner: 5 },
    );
    await store.joinGroup(bob.id, g.id, 0);
    await store.joinGroup(cat.id, g.id, 0);
    const connect = async (node: number, user: { id: number; token: string }) => {
      const port = nodes[node]!.server.addr.port;
      const s = new TestSocket(
        `ws://127.0.0.1:${port}/chat?id=${user.id}&token=${encodeURIComponent(user.token)}`,
      );
      sockets.push(s);
      await s.opened;
      s.send({ cmd: 30, all: true });
      await s.waitFor((f) => f["cmd"] === 31);
      return s;
    };
    const a = await connect(0, ann);
    const b = await connect(1, bob);
    const c = await connect(1, cat);
    const N = 40;
    for (let i = 0; i < N; i++) {
      a.send({ cmd: 10, dstid: bob.id, media: 1, content: `d${i}`, cid: `d${i}` });
      a.send({ cmd: 11, dstid: g.id, media: 1, content: `a${i}`, cid: `a${i}` });
      b.send({ cmd: 11, dstid: g.id, media: 1, content: `b${i}`, cid: `b${i}` });
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    const isChat = (f: Record<string, unknown>) => f["cmd"] === 10 || f["cmd"] === 11;
    const isData = (f: Record<string, unknown>) => isChat(f) || f["cmd"] === 20;
    await b.waitFor(isData, 3 * N, 10_000);
    await c.waitFor(isChat, 2 * N, 10_000);
    await a.waitFor(isData, 3 * N, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    const seqs = (s: TestSocket, conv: string) =>
      s.frames.filter((f) => isData(f) && f["conv"] === conv).map((f) => Number(f["seq"]));
    const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
    const dm = `u:${Math.min(ann.id, bob.id)}:${Math.max(ann.id, bob.id)}`;
    deepStrictEqual(seqs(b, dm), upTo(N));
    deepStrictEqual(seqs(b, `g:${g.id}`), upTo(2 * N));
    deepStrictEqual(seqs(c, `g:${g.id}`), upTo(2 * N));
    deepStrictEqual(seqs(a, `g:${g.id}`), upTo(2 * N));
    deepStrictEqual(hub.lost > 10, true, "the hub did drop packets");
  } finally {
    await Promise.all(sockets.map((s) => s.close()));
    for (const n of nodes) {
      n.chat.close();
      await n.bus.close();
      n.ac.abort();
      await n.server.finished;
    }
    await dispose();
  }
});
