/**
 * A node that dies right after its last message went out, and that message's
 * datagram is lost: no later seq shows the hole and the dead node announces
 * no heads. The other node notices the silence and checks its sessions'
 * conversations against the store.
 */

import { deepStrictEqual } from "node:assert/strict";
import { openTestStore } from "./_chat_helpers.ts";
import { hubCast, LossyHub, startHubNodes } from "./_lossy_hub.ts";

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

Deno.test("a partition heals after the cut-off node stopped announcing: its peer checks the store when it hears it again", async () => {
  const { store, dispose } = await openTestStore("sqlite");
  const hub = new LossyHub(0, 1);
  // Heads are announced for 200 ms after a message, so they are long over when the link comes back.
  const nodes = await startHubNodes(store, hub, ["a", "b"], {
    headIntervalMs: 50,
    repairFromStore: true,
    headsActiveMs: 200,
  });
  try {
    const { ann, bob } = await hubCast(store, []);
    const a = await nodes[0]!.connect(ann);
    const b = await nodes[1]!.connect(bob);
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: "before", cid: "p1" });
    await b.waitFor(isChat);
    hub.cut.add(nodes[0]!.transport);
    // b declares a lost (3 intervals) and checks the store: nothing new yet.
    await new Promise((r) => setTimeout(r, 400));
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: "during", cid: "p2" });
    await a.waitFor((f) => f["cmd"] === 20, 2);
    await new Promise((r) => setTimeout(r, 600));
    deepStrictEqual(b.frames.filter(isChat).map((f) => f["content"]), ["before"]);
    hub.cut.delete(nodes[0]!.transport);
    await b.waitFor(isChat, 2, 3000);
    deepStrictEqual(b.frames.filter(isChat).map((f) => f["content"]), ["before", "during"]);
  } finally {
    for (const n of nodes) await n.close();
    await dispose();
  }
});

Deno.test("a group join announced while the link was cut: after the partition heals, the member's session gets the group's messages", async () => {
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
    // Node b has heard node a (so it can miss it), then the link is cut.
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: "hello", cid: "j0" });
    await b.waitFor(isChat);
    hub.cut.add(nodes[0]!.transport);
    await new Promise((r) => setTimeout(r, 400));
    // Bob joins through node a (as /contact/joincommunity there does); the announcement is lost.
    await store.joinGroup(bob.id, g.id, Date.now());
    nodes[0]!.chat.memberJoined(g.id, bob.id);
    a.send({ cmd: 11, dstid: g.id, media: 1, content: "during", cid: "j1" });
    await a.waitFor((f) => f["cmd"] === 20, 2);
    await new Promise((r) => setTimeout(r, 600));
    hub.cut.delete(nodes[0]!.transport);
    // Node b hears a again, reads the store's heads, and finds Bob in the group.
    await new Promise((r) => setTimeout(r, 500));
    a.send({ cmd: 11, dstid: g.id, media: 1, content: "after", cid: "j2" });
    await b.waitFor((f) => isChat(f) && f["content"] === "after", 1, 3000);
  } finally {
    for (const n of nodes) await n.close();
    await dispose();
  }
});
