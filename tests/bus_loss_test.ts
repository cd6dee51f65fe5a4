/**
 * Gap repair end to end, without a kernel's help: two chat nodes over one
 * store, joined by a signed-envelope bus whose transport drops 30% of the
 * packets (a seeded random). Every session still gets every message once,
 * in seq order — holes are filled when a later seq arrives, the lost tail
 * by the nodes' head announcements, and a conversation's first message by
 * following new conversations from seq 1.
 */

import { deepStrictEqual } from "node:assert/strict";
import { openTestStore, type TestSocket } from "./_chat_helpers.ts";
import { hubCast, LossyHub, startHubNodes } from "./_lossy_hub.ts";

Deno.test("sessions on two nodes get every message once, in order, over a bus losing 30%", async () => {
  const { store, dispose } = await openTestStore("sqlite");
  const hub = new LossyHub(0.3, 42);
  const nodes = await startHubNodes(store, hub, ["a", "b"], { headIntervalMs: 100 });
  try {
    const { ann, bob, cat, g } = await hubCast(store, ["bob", "cat"]);
    const a = await nodes[0]!.connect(ann);
    const b = await nodes[1]!.connect(bob);
    const c = await nodes[1]!.connect(cat);
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
    for (const n of nodes) await n.close();
    await dispose();
  }
});
