/**
 * A group join whose announcement reaches another node after the group's
 * next message: nothing orders envelopes of different nodes (or a slow
 * publish), so the new member's session there must still get that message.
 */

import { deepStrictEqual, equal } from "node:assert/strict";
import { Auth } from "../lib/auth.ts";
import { contactRoutes } from "../lib/http/contact_routes.ts";
import type { MembershipChange } from "../lib/http/route_deps.ts";
import { openTestStore } from "./_chat_helpers.ts";
import { call, TEST_CONFIG } from "./_http_helpers.ts";
import { hubCast, LossyHub, startHubNodes } from "./_lossy_hub.ts";

const isGroupMsg = (f: Record<string, unknown>) => f["cmd"] === 11;

Deno.test("a join announced after the group's next message reached the member's node: the session gets that message, then the rest, in order", async () => {
  const { store, dispose } = await openTestStore("sqlite");
  const hub = new LossyHub(0, 1);
  const nodes = await startHubNodes(store, hub, ["a", "b"], { headIntervalMs: 50 });
  try {
    const { ann, bob, g } = await hubCast(store, []);
    const a = await nodes[0]!.connect(ann);
    const b = await nodes[1]!.connect(bob);
    a.send({ cmd: 11, dstid: g.id, media: 1, content: "before", cid: "j0" });
    await a.waitFor((f) => f["cmd"] === 20);
    // Bob joins through node a's REST route; its announcement is held back (a slow publish).
    const held: MembershipChange[] = [];
    const contact = contactRoutes({
      store,
      auth: new Auth({ store, tokenTtlSeconds: 3600, iterations: 1000 }),
      config: TEST_CONFIG,
      now: Date.now,
      onMembershipChange: (change) => held.push(change),
    });
    const joined = await call(contact, "/contact/joincommunity", {
      fields: { dstid: g.id },
      token: bob.token,
    });
    equal(joined.body.code, 0);
    // Ann's next message reaches node b first: Bob is no member there yet.
    a.send({ cmd: 11, dstid: g.id, media: 1, content: "first", cid: "j1" });
    await a.waitFor((f) => f["cmd"] === 20, 2);
    await new Promise((r) => setTimeout(r, 100));
    equal(b.frames.filter(isGroupMsg).length, 0);
    // Now the announcement goes out, as main.ts wires it.
    for (const change of held) {
      if (change.kind === "group_joined") {
        nodes[0]!.chat.memberJoined(change.groupId, change.userId, { seq: change.seq });
      }
    }
    a.send({ cmd: 11, dstid: g.id, media: 1, content: "second", cid: "j2" });
    await a.waitFor((f) => f["cmd"] === 20, 3);
    await b.waitFor(isGroupMsg, 2, 3000).catch(() => {});
    await new Promise((r) => setTimeout(r, 200));
    deepStrictEqual(
      b.frames.filter(isGroupMsg).map((f) => `${f["seq"]}:${f["content"]}`),
      ["2:first", "3:second"],
      "nothing from before the join, nothing lost after it",
    );
  } finally {
    for (const n of nodes) await n.close();
    await dispose();
  }
});
