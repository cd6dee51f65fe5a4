/**
 * A node that dies right after its last message went out, and that message's
 * datagram is lost: no later seq shows the hole and the dead node announces
 * no heads. The other node notices the silence and checks its sessions'
 * conversations against the store.
 */

import { deepStrictEqual } from "node:assert/strict";
import { openTestStore } from "./_chat_helpers.ts";
import type { Store } from "../lib/store.ts";
import type { TestSocket } from "./_chat_helpers.ts";
import { hubCast, type HubNode, LossyHub, startHubNodes } from "./_lossy_hub.ts";

const isChat = (f: Record<string, unknown>) => f["cmd"] === 10 || f["cmd"] === 11;

for (const repairFromStore of [true, false]) {
  const outcome = repairFromStore
    ? "its peer's sessions get the lost tail from the store"
    : "without the store repair the tail stays lost (the control)";
  Deno.test(`a node goes silent after a lost last message: ${outcome}`, async () => {
    const { store, dispose } = await openTestStore("sqlite");
    const hub = new LossyHub(0, 1);
    const nodes = await startHubNodes(store, hub, ["a", "b"], {
      headIntervalMs: 50,
      repairFromStore,
    });
    try {
      const { ann, bob, cat, g } = await hubCast(store, ["cat"]);
      const a = await nodes[0]!.connect(ann);
      const b = await nodes[1]!.connect(bob);
      const c = await nodes[1]!.connect(cat);
      a.send({ cmd: 10, dstid: bob.id, media: 1, content: "first", cid: "f1" });
      await b.waitFor(isChat);
      // Node a's link dies: its next packets, heads and keepalives go nowhere.
      hub.cut.add(nodes[0]!.transport);
      a.send({ cmd: 10, dstid: bob.id, media: 1, content: "last", cid: "f2" });
      a.send({ cmd: 11, dstid: g.id, media: 1, content: "group", cid: "f3" });
      await a.waitFor((f) => f["cmd"] === 20, 3);
      // 3 head intervals of silence, then a store read: well within a second.
      const wait = repairFromStore ? 3000 : 800;
      const got = async (s: typeof b, n: number) => {
        try {
          await s.waitFor(isChat, n, wait);
        } catch { /* the control: checked below */ }
        return s.frames.filter(isChat).map((f) => f["content"]);
      };
      if (repairFromStore) {
        deepStrictEqual(await got(b, 2), ["first", "last"]);
        deepStrictEqual(await got(c, 1), ["group"]);
      } else {
        deepStrictEqual(await got(b, 2), ["first"]);
        deepStrictEqual(await got(c, 1), []);
      }
    } finally {
      for (const n of nodes) await n.close();
      await dispose();
    }
  });
}

/**
 * Nodes a and b on a hub (heads announced for 200 ms after a message), Ann
 * on a and Bob on b; a's first message reached b ("before"), then a's link
 * is cut long enough for b to count a lost and check the store (nothing new
 * yet). `body` runs the partition; `heal()` restores the link.
 */
async function partitioned(
  body: (p: {
    store: Store;
    nodes: HubNode[];
    a: TestSocket;
    b: TestSocket;
    bob: { id: number };
    g: { id: number };
    heal: () => void;
  }) => Promise<void>,
): Promise<void> {
  const { store, dispose } = await openTestStore("sqlite");
  const hub = new LossyHub(0, 1);
  const nodes = await startHubNodes(store, hub, ["a", "b"], {
    headIntervalMs: 50,
    repairFromStore: true,
    headsActiveMs: 200,
  });
  try {
    const { ann, bob, g } = await hubCast(store, []);
    const a = await nodes[0]!.connect(ann);
    const b = await nodes[1]!.connect(bob);
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: "before", cid: "p0" });
    await b.waitFor(isChat);
    hub.cut.add(nodes[0]!.transport);
    await new Promise((r) => setTimeout(r, 400));
    await body({ store, nodes, a, b, bob, g, heal: () => hub.cut.delete(nodes[0]!.transport) });
  } finally {
    for (const n of nodes) await n.close();
    await dispose();
  }
}

Deno.test("a partition heals after the cut-off node stopped announcing: its peer checks the store when it hears it again", async () => {
  await partitioned(async ({ a, b, bob, heal }) => {
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: "during", cid: "p2" });
    await a.waitFor((f) => f["cmd"] === 20, 2);
    await new Promise((r) => setTimeout(r, 600));
    deepStrictEqual(b.frames.filter(isChat).map((f) => f["content"]), ["before"]);
    heal();
    await b.waitFor(isChat, 2, 3000);
    deepStrictEqual(b.frames.filter(isChat).map((f) => f["content"]), ["before", "during"]);
  });
});

Deno.test("a group join announced while the link was cut: after the partition heals, the member's session gets the group's messages", async () => {
  await partitioned(async ({ store, nodes, a, b, bob, g, heal }) => {
    // Bob joins through node a (as /contact/joincommunity there does); the announcement is lost.
    await store.joinGroup(bob.id, g.id, Date.now());
    nodes[0]!.chat.memberJoined(g.id, bob.id);
    a.send({ cmd: 11, dstid: g.id, media: 1, content: "during", cid: "j1" });
    await a.waitFor((f) => f["cmd"] === 20, 2);
    await new Promise((r) => setTimeout(r, 600));
    heal();
    // Node b hears a again, reads the store's heads, and finds Bob in the group.
    await new Promise((r) => setTimeout(r, 500));
    a.send({ cmd: 11, dstid: g.id, media: 1, content: "after", cid: "j2" });
    await b.waitFor((f) => isChat(f) && f["content"] === "after", 1, 3000);
  });
});
