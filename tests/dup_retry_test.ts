/**
 * A resent message that was stored before (`dup: true`): the node that
 * stored the first copy may have died before publishing it, so the retry
 * must still reach the recipients; but sessions that got it, or that came
 * after it, must not get it again, out of order.
 */

import { deepStrictEqual } from "node:assert/strict";
import { openTestStore, TestSocket } from "./_chat_helpers.ts";
import { hubCast, type HubNode, LossyHub, startHubNodes } from "./_lossy_hub.ts";
import { newMessage } from "./_store_samples.ts";

const isChat = (f: Record<string, unknown>) => f["cmd"] === 10 || f["cmd"] === 11;
const seqs = (s: TestSocket) => s.frames.filter(isChat).map((f) => f["seq"]);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An old page's socket on `node`: it never sends a catch-up (live messages start after 1 s). */
async function oldPage(node: HubNode, user: { id: number; token: string }): Promise<TestSocket> {
  const s = new TestSocket(
    `ws://127.0.0.1:${node.port}/chat?id=${user.id}&token=${encodeURIComponent(user.token)}`,
  );
  await s.opened;
  return s;
}

Deno.test("a dup:true retry reaches no session twice or out of order, on the sending node or another, and still delivers a copy nobody published", async () => {
  const { store, dispose } = await openTestStore("sqlite");
  const hub = new LossyHub(0, 1);
  const nodes = await startHubNodes(store, hub, ["a", "b"], { headIntervalMs: 50 });
  const [na, nb] = [nodes[0]!, nodes[1]!];
  const olds: TestSocket[] = [];
  try {
    const { ann, bob } = await hubCast(store, []);
    const a = await na.connect(ann);
    const send = (cid: string, content: string) =>
      a.send({ cmd: 10, dstid: bob.id, media: 1, content, cid });
    olds.push(await oldPage(na, bob), await oldPage(nb, bob));
    await pause(1_100);
    send("r1", "m1");
    send("r2", "m2");
    await a.waitFor((f) => f["cmd"] === 20, 2);
    for (const s of olds) await s.waitFor(isChat, 2);
    // The old pages reconnect (showing m1 and m2 still); a new client catches up.
    for (const s of olds.splice(0)) await s.close();
    const oldOnA = await oldPage(na, bob);
    const oldOnB = await oldPage(nb, bob);
    olds.push(oldOnA, oldOnB);
    const fresh = await nb.connect(bob);
    await pause(1_100);
    // Ann's first ack went to a socket that closed: she resends m1.
    send("r1", "m1");
    send("r3", "m3");
    await a.waitFor((f) => f["cmd"] === 20, 4);
    for (const s of [oldOnA, oldOnB, fresh]) await s.waitFor((f) => f["seq"] === 3);
    await pause(200);
    deepStrictEqual(seqs(oldOnA), [3], "no old m1 on the sending node's old page");
    deepStrictEqual(seqs(oldOnB), [3], "no old m1 on the other node's old page");
    deepStrictEqual(seqs(fresh), [1, 2, 3]);
    // A node stored m4 and died before publishing it; Ann resends it through node a.
    await store.appendMessage(newMessage(ann.id, { dstid: bob.id, cid: "r4", content: "m4" }), 4);
    send("r4", "m4");
    const acks = await a.waitFor((f) => f["cmd"] === 20, 5);
    deepStrictEqual([acks[4]?.["seq"], acks[4]?.["dup"]], [4, true]);
    for (const s of [oldOnA, oldOnB, fresh]) await s.waitFor((f) => f["seq"] === 4, 1, 3000);
    await pause(200);
    deepStrictEqual(seqs(oldOnA), [3, 4]);
    deepStrictEqual(seqs(oldOnB), [3, 4]);
    deepStrictEqual(seqs(fresh), [1, 2, 3, 4]);
    deepStrictEqual(seqs(a), [], "the sender gets acks, never an echo");
  } finally {
    for (const s of olds) await s.close();
    for (const n of nodes) await n.close();
    await dispose();
  }
});
