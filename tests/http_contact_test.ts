/**
 * /contact/*: friends and groups (S1, S2, L1, L2), run against the memory
 * store and SQLite (`:memory:`).
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { AbuseLimits, type LimitName } from "../lib/abuse_limits.ts";
import { type Config, parseConfig } from "../lib/config.ts";
import { call, makeTestApp, register } from "./_http_helpers.ts";
import type { StoreKind } from "./_http_helpers.ts";
import { newMessage } from "./_store_samples.ts";

/** Limits from the defaults with `settings` over them, on a fixed clock; `seen` records refusals. */
function fixedLimits(settings: Partial<Config>) {
  const seen: LimitName[] = [];
  const limits = new AbuseLimits({ ...parseConfig({}), ...settings }, {
    now: () => 1_700_000_000_000,
    onLimited: (l) => seen.push(l),
  });
  return { limits, seen };
}

const KINDS: StoreKind[] = ["memory", "sqlite"];

for (const kind of KINDS) {
  Deno.test(`[${kind}] /contact/addfriend makes a mutual friendship and refuses self and unknown users`, async () => {
    await using t = await makeTestApp({ store: kind });
    const a = await register(t.app, "13800000001");
    const b = await register(t.app, "13800000002");
    const self = await call(t.app, "/contact/addfriend", {
      fields: { dstid: a.id },
      token: a.token,
    });
    strictEqual(self.status, 400);
    strictEqual(self.body.msg, "You cannot add yourself as a friend");
    const unknown = await call(t.app, "/contact/addfriend", {
      fields: { dstid: 999 },
      token: a.token,
    });
    strictEqual(unknown.status, 404);
    strictEqual(unknown.body.msg, "No user with this id");
    const r = await call(t.app, "/contact/addfriend", {
      fields: { dstid: b.id },
      token: a.token,
      form: true,
    });
    strictEqual(r.body.code, 0);
    strictEqual(r.body.msg, "Friend added");
    const ofB = await call(t.app, "/contact/loadfriend", { token: b.token });
    deepStrictEqual(ofB.body.rows.map((u: { id: number }) => u.id), [a.id]);
    deepStrictEqual(t.changes, [{ kind: "friend_added", userId: a.id, friendId: b.id }]);
  });

  Deno.test(`[${kind}] L1: adding a friend twice keeps one friendship and says so`, async () => {
    await using t = await makeTestApp({ store: kind });
    const a = await register(t.app, "13800000001");
    const b = await register(t.app, "13800000002");
    await call(t.app, "/contact/addfriend", { fields: { dstid: b.id }, token: a.token });
    const again = await call(t.app, "/contact/addfriend", {
      fields: { dstid: b.id },
      token: a.token,
    });
    const reverse = await call(t.app, "/contact/addfriend", {
      fields: { dstid: a.id },
      token: b.token,
    });
    for (const r of [again, reverse]) {
      strictEqual(r.status, 409);
      deepStrictEqual(r.body, { code: -1, msg: "You are already friends" });
    }
    const list = await call(t.app, "/contact/loadfriend", { token: a.token });
    strictEqual(list.body.total, 1);
    strictEqual(list.body.rows.length, 1);
    strictEqual(t.changes.length, 1);
  });

  Deno.test(`[${kind}] S1: /contact/loadfriend lists public fields only`, async () => {
    await using t = await makeTestApp({ store: kind });
    const a = await register(t.app, "13800000001");
    const b = await register(t.app, "13800000002");
    await call(t.app, "/contact/addfriend", { fields: { dstid: b.id }, token: a.token });
    const r = await call(t.app, "/contact/loadfriend", { token: a.token });
    deepStrictEqual({ code: r.body.code, msg: r.body.msg, total: r.body.total }, {
      code: 0,
      msg: "",
      total: 1,
    });
    const text = JSON.stringify(r.body);
    ok(!text.includes(b.token) && !/token|passw|hash|salt/i.test(text), text);
    const empty = await call(t.app, "/contact/loadfriend", {
      method: "GET",
      token: (await register(t.app, "3")).token,
    });
    deepStrictEqual(empty.body, { code: 0, msg: "", rows: [], total: 0 });
  });

  Deno.test(`[${kind}] S1: a friend's mobile is in neither the add answer nor the friend list`, async () => {
    await using t = await makeTestApp({ store: kind });
    const a = await register(t.app, "13800000001", { nickname: "Ann" });
    const b = await register(t.app, "13800000002", { nickname: "Bee" });
    const added = await call(t.app, "/contact/addfriend", {
      fields: { dstid: b.id },
      token: a.token,
    });
    strictEqual(added.body.code, 0);
    strictEqual(added.body.data.id, b.id);
    const ofA = await call(t.app, "/contact/loadfriend", { token: a.token });
    const ofB = await call(t.app, "/contact/loadfriend", { token: b.token });
    strictEqual(ofA.body.rows[0].nickname, "Bee");
    for (
      const [name, r, mobile] of [["add", added, "13800000002"], ["A's list", ofA, "13800000002"], [
        "B's list",
        ofB,
        "13800000001",
      ]] as const
    ) {
      ok(!JSON.stringify(r.body).includes(mobile), `${name}: ${JSON.stringify(r.body)}`);
    }
    for (const user of [added.body.data, ofA.body.rows[0], ofB.body.rows[0]]) {
      ok(!("mobile" in user), JSON.stringify(user));
    }
  });

  Deno.test(`[${kind}] friend adds are rate limited per user with 429 and Retry-After; 404s and 409s count; adds stay instant and mutual`, async () => {
    const { limits, seen } = fixedLimits({ friendAdds: 3 });
    await using t = await makeTestApp({ store: kind, extra: { limits } });
    const a = await register(t.app, "13800000001");
    const b = await register(t.app, "13800000002");
    const c = await register(t.app, "13800000003");
    const add = (dstid: number, token: string) =>
      call(t.app, "/contact/addfriend", { fields: { dstid }, token });
    strictEqual((await add(b.id, a.token)).status, 200);
    strictEqual((await add(999, a.token)).status, 404);
    strictEqual((await add(b.id, a.token)).status, 409);
    const refused = await add(c.id, a.token);
    strictEqual(refused.status, 429);
    deepStrictEqual(refused.body, { code: -1, msg: "Too many friend adds, retry in 1200 s" });
    strictEqual(refused.headers.get("retry-after"), "1200", "3 an hour: one back every 20 min");
    strictEqual((await t.store.listFriends(c.id)).length, 0, "the refused add stored nothing");
    // Another user is not limited, and an add is still instant and mutual.
    const fromC = await add(b.id, c.token);
    strictEqual(fromC.status, 200);
    deepStrictEqual((await t.store.listFriends(b.id)).map((u) => u.id).sort(), [a.id, c.id]);
    deepStrictEqual(seen, ["friend_add"]);
  });

  Deno.test(`[${kind}] group joins and creations share a per-user rate limit with 429 and Retry-After`, async () => {
    const { limits, seen } = fixedLimits({ groupJoins: 3 });
    await using t = await makeTestApp({ store: kind, extra: { limits } });
    const a = await register(t.app, "13800000001");
    const b = await register(t.app, "13800000002");
    const create = (name: string, token: string) =>
      call(t.app, "/contact/createcommunity", { fields: { name }, token });
    const join = (dstid: number, token: string) =>
      call(t.app, "/contact/joincommunity", { fields: { dstid }, token });
    const g1 = (await create("one", a.token)).body.data.id;
    const g2 = (await create("two", b.token)).body.data.id;
    strictEqual((await join(g2, a.token)).status, 200);
    strictEqual((await join(g2 + 100, a.token)).status, 404);
    const refusedJoin = await join(g2, a.token);
    strictEqual(refusedJoin.status, 429);
    deepStrictEqual(refusedJoin.body, { code: -1, msg: "Too many group joins, retry in 1200 s" });
    strictEqual(refusedJoin.headers.get("retry-after"), "1200");
    const refusedCreate = await create("three", a.token);
    strictEqual(refusedCreate.status, 429);
    deepStrictEqual((await t.store.listGroups(a.id)).map((g) => g.id).sort(), [g1, g2].sort());
    strictEqual((await join(g1, b.token)).status, 200, "per user: B is not limited");
    deepStrictEqual(seen, ["group_join", "group_join"]);
  });

  Deno.test(`[${kind}] S2: contact routes take identity from the token, never from userid or ownerid`, async (t) => {
    await using h = await makeTestApp({ store: kind });
    const victim = await register(h.app, "13800000001");
    const attacker = await register(h.app, "13800000002");
    const cases = [
      { path: "/contact/loadfriend", fields: { userid: victim.id } },
      { path: "/contact/loadcommunity", fields: { userid: victim.id } },
      { path: "/contact/addfriend", fields: { userid: victim.id, dstid: attacker.id } },
      { path: "/contact/createcommunity", fields: { ownerid: victim.id, name: "Mine now" } },
      { path: "/contact/joincommunity", fields: { userid: victim.id, dstid: 1 } },
    ];
    for (const c of cases) {
      await t.step(`${c.path} with someone else's id is 403`, async () => {
        const r = await call(h.app, c.path, {
          fields: c.fields,
          token: attacker.token,
          form: true,
        });
        strictEqual(r.status, 403);
        strictEqual(r.body.code, -1);
      });
      await t.step(`${c.path} with only a userid is 401`, async () => {
        const r = await call(h.app, c.path, { fields: c.fields, form: true });
        strictEqual(r.status, 401);
        strictEqual(r.body.msg, "Please log in first");
      });
    }
    strictEqual((await h.store.listFriends(victim.id)).length, 0);
    strictEqual((await h.store.listGroups(victim.id)).length, 0);
    await t.step("a matching userid is accepted", async () => {
      const r = await call(h.app, "/contact/loadfriend", {
        fields: { userid: attacker.id, token: attacker.token },
        form: true,
      });
      strictEqual(r.body.code, 0);
    });
  });

  Deno.test(`[${kind}] /contact/createcommunity returns the real group and the creator is a member`, async () => {
    await using t = await makeTestApp({ store: kind });
    const a = await register(t.app, "13800000001");
    const r = await call(t.app, "/contact/createcommunity", {
      fields: {
        name: "Tea lovers",
        icon: "/asset/images/community.png",
        cate: 1,
        memo: "Green and black",
      },
      token: a.token,
    });
    strictEqual(r.body.code, 0);
    const g = r.body.data;
    ok(g.id > 0);
    deepStrictEqual(
      { name: g.name, ownerid: g.ownerid, icon: g.icon, cate: g.cate, memo: g.memo },
      {
        name: "Tea lovers",
        ownerid: a.id,
        icon: "/asset/images/community.png",
        cate: 1,
        memo: "Green and black",
      },
    );
    deepStrictEqual(Object.keys(g).sort(), [
      "cate",
      "createat",
      "icon",
      "id",
      "memo",
      "name",
      "ownerid",
    ]);
    const mine = await call(t.app, "/contact/loadcommunity", { token: a.token });
    deepStrictEqual(mine.body.rows, [g]);
    strictEqual(mine.body.total, 1);
    deepStrictEqual(t.changes, [{ kind: "group_joined", userId: a.id, groupId: g.id, seq: 0 }]);
  });

  Deno.test(`[${kind}] L2: a sixth group is refused with the limit message`, async () => {
    await using t = await makeTestApp({ store: kind });
    const a = await register(t.app, "13800000001");
    for (let i = 1; i <= 5; i++) {
      const r = await call(t.app, "/contact/createcommunity", {
        fields: { name: `g${i}` },
        token: a.token,
      });
      strictEqual(r.body.code, 0);
      strictEqual(r.body.data.name, `g${i}`);
    }
    const sixth = await call(t.app, "/contact/createcommunity", {
      fields: { name: "g6" },
      token: a.token,
    });
    strictEqual(sixth.status, 422);
    strictEqual(sixth.body.code, -1);
    ok(sixth.body.msg.length > 0);
    strictEqual((await t.store.listGroups(a.id)).length, 5);
  });

  Deno.test(`[${kind}] /contact/joincommunity needs an existing group and is idempotent`, async () => {
    await using t = await makeTestApp({ store: kind });
    const a = await register(t.app, "13800000001");
    const b = await register(t.app, "13800000002");
    const created = await call(t.app, "/contact/createcommunity", {
      fields: { name: "Club" },
      token: a.token,
    });
    const groupId = created.body.data.id;
    const missing = await call(t.app, "/contact/joincommunity", {
      fields: { dstid: groupId + 100 },
      token: b.token,
    });
    strictEqual(missing.status, 404);
    strictEqual(missing.body.msg, "No group with this id");
    for (const cid of ["m1", "m2"]) {
      await t.store.appendMessage(newMessage(a.id, { cmd: 11, dstid: groupId, cid }), 1);
    }
    const first = await call(t.app, "/contact/joincommunity", {
      fields: { dstid: groupId },
      token: b.token,
    });
    const second = await call(t.app, "/contact/joincommunity", {
      fields: { dstid: groupId },
      token: b.token,
    });
    strictEqual(first.body.code, 0);
    strictEqual(second.body.code, 0);
    strictEqual(second.body.msg, "Already a member");
    deepStrictEqual(await t.store.listMembers(groupId), [a.id, b.id].sort((x, y) => x - y));
    // The group's newest seq before the join: b's sessions get what comes after.
    // A repeat is announced again: it may retry a join whose answer was lost
    // after its commit, and the other nodes heard nothing of it then.
    deepStrictEqual(t.changes.filter((c) => c.userId === b.id), [
      { kind: "group_joined", userId: b.id, groupId, seq: 2 },
      { kind: "group_joined", userId: b.id, groupId, seq: 2 },
    ]);
  });
}
