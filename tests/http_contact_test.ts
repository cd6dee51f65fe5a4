/**
 * /contact/*: friends and groups (S1, S2, L1, L2), run against the memory
 * store and SQLite (`:memory:`).
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { call, makeTestApp, register } from "./_http_helpers.ts";
import type { StoreKind } from "./_http_helpers.ts";

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
    deepStrictEqual(t.changes, [{ kind: "group_joined", userId: a.id, groupId: g.id }]);
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
    strictEqual(t.changes.filter((c) => c.userId === b.id).length, 1);
  });
}
