/**
 * The {@linkcode Store} contract: one suite every implementation must pass.
 * `storeContract(name, open)` registers the cases as `Deno.test`s; each case
 * opens a fresh, empty store and disposes of it afterwards.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConflictError, LimitError, NotFoundError } from "../lib/errors.ts";
import type { NewMessage, NewUser, PublicUser, Store } from "../lib/store.ts";

/** A fresh, empty store and how to throw it away (close, drop schema, …). */
export interface StoreFixture extends AsyncDisposable {
  readonly store: Store;
}

/** Options for {@linkcode storeContract}. */
export interface StoreContractOptions {
  /** Skip the whole suite (e.g. no Postgres URL). @default {false} */
  ignore?: boolean;
}

const HASH = "$scrypt$secret-hash-value";

/** A registration for mobile `mobile`. */
export function newUser(mobile: string, nickname = `user ${mobile}`): NewUser {
  return {
    mobile,
    passwordHash: `${HASH}-${mobile}`,
    nickname,
    avatar: "/asset/images/user.jpg",
    sex: "U",
    memo: "",
  };
}

/** A 1:1 (cmd 10) or group (cmd 11) message from `userid`. */
export function newMessage(
  userid: number,
  to: { cmd?: number; dstid: number; cid: string; content?: string },
): NewMessage {
  return {
    userid,
    cmd: to.cmd ?? 10,
    dstid: to.dstid,
    media: 1,
    content: to.content ?? `hello ${to.cid}`,
    pic: "",
    url: "",
    memo: "",
    amount: 0,
    cid: to.cid,
  };
}

function assertPublic(user: PublicUser): void {
  const json = JSON.stringify(user);
  assert.ok(!json.includes(HASH), `password hash leaked: ${json}`);
  assert.deepStrictEqual(
    Object.keys(user).sort(),
    ["avatar", "createdAt", "id", "memo", "mobile", "nickname", "sex"],
  );
}

type Case = (store: Store) => Promise<void>;

/** Register the contract's `Deno.test`s for the store `open` makes. */
export function storeContract(
  name: string,
  open: () => Promise<StoreFixture>,
  options: StoreContractOptions = {},
): void {
  for (const [title, fn] of Object.entries(CASES)) {
    Deno.test({
      name: `${name}: ${title}`,
      ignore: options.ignore ?? false,
      async fn() {
        await using fixture = await open();
        await fn(fixture.store);
      },
    });
  }
}

async function users(store: Store, n: number): Promise<PublicUser[]> {
  const out: PublicUser[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await store.createUser(newUser(`1380000${1000 + i}`), 1000 + i));
  }
  return out;
}

const CASES: Record<string, Case> = {
  async "createUser() stores a user and findUser() returns it without the hash"(
    store,
  ) {
    const u = await store.createUser(newUser("13800001111", "Ann"), 42);
    assert.ok(Number.isInteger(u.id) && u.id > 0);
    assert.equal(typeof u.id, "number");
    assert.equal(u.nickname, "Ann");
    assert.equal(u.createdAt, 42);
    assertPublic(u);
    const found = await store.findUser(u.id);
    assert.deepStrictEqual(found, u);
    assert.equal(await store.findUser(u.id + 1000), undefined);
    assert.equal(await store.findUser(0), undefined);
  },

  async "findCredentials() returns the stored hash only with the login lookup"(
    store,
  ) {
    const u = await store.createUser(newUser("13800001111"), 1);
    const creds = await store.findCredentials("13800001111");
    assert.ok(creds);
    assert.equal(creds.passwordHash, `${HASH}-13800001111`);
    assert.deepStrictEqual(creds.user, u);
    assertPublic(creds.user);
    assert.equal(await store.findCredentials("13899999999"), undefined);
  },

  async "createUser() throws ConflictError for a taken mobile, also under a race"(
    store,
  ) {
    await store.createUser(newUser("13800001111"), 1);
    await assert.rejects(
      store.createUser(newUser("13800001111"), 2),
      ConflictError,
    );
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => store.createUser(newUser("13800002222"), 3)),
    );
    const ok = results.filter((r) => r.status === "fulfilled");
    assert.equal(ok.length, 1);
    for (const r of results) {
      if (r.status === "rejected") assert.ok(r.reason instanceof ConflictError);
    }
  },

  async "updateProfile() changes only the given fields"(store) {
    const u = await store.createUser(newUser("13800001111", "Ann"), 1);
    const changed = await store.updateProfile(u.id, { memo: "hi", sex: "W" });
    assert.deepStrictEqual(changed, { ...u, memo: "hi", sex: "W" });
    assertPublic(changed);
    assert.deepStrictEqual(await store.findUser(u.id), changed);
    assert.deepStrictEqual(await store.updateProfile(u.id, {}), changed);
    assert.equal(await store.updateProfile(u.id + 99, { memo: "x" }), undefined);
  },

  async "tokens are found until they expire or are revoked"(store) {
    const [u] = await users(store, 1);
    assert.ok(u);
    await store.createToken("hash-a", u.id, 2000);
    await store.createToken("hash-b", u.id, 3000);
    assert.equal(await store.findTokenUser("hash-a", 1999), u.id);
    assert.equal(await store.findTokenUser("hash-a", 2000), undefined);
    assert.equal(await store.findTokenUser("unknown", 0), undefined);
    await store.revokeToken("hash-b");
    await store.revokeToken("hash-b");
    await store.revokeToken("never-issued");
    assert.equal(await store.findTokenUser("hash-b", 1000), undefined);
    assert.equal(await store.purgeExpiredTokens(2500), 1);
    assert.equal(await store.purgeExpiredTokens(2500), 0);
    assert.equal(await store.purgeExpiredTokens(3001), 1);
  },

  async "addFriendship() is mutual, reports exists on repeat and rejects bad ids"(
    store,
  ) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    assert.equal(await store.addFriendship(a.id, b.id, 5), "added");
    assert.equal(await store.addFriendship(a.id, b.id, 6), "exists");
    assert.equal(await store.addFriendship(b.id, a.id, 7), "exists");
    assert.equal(await store.areFriends(a.id, b.id), true);
    assert.equal(await store.areFriends(b.id, a.id), true);
    assert.equal(await store.areFriends(a.id, c.id), false);
    assert.deepStrictEqual(await store.listFriends(a.id), [b]);
    assert.deepStrictEqual(await store.listFriends(b.id), [a]);
    assert.deepStrictEqual(await store.listFriends(c.id), []);
    await assert.rejects(store.addFriendship(a.id, 9999, 1), NotFoundError);
    await assert.rejects(store.addFriendship(9999, a.id, 1), NotFoundError);
    await assert.rejects(store.addFriendship(a.id, a.id, 1), RangeError);
    assert.deepStrictEqual(await store.listFriends(a.id), [b]);
  },

  async "addFriendship() racing both ways adds exactly one friendship"(store) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    const results = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) =>
          i % 2 === 0 ? store.addFriendship(a.id, b.id, i) : store.addFriendship(b.id, a.id, i),
      ),
    );
    assert.equal(results.filter((r) => r === "added").length, 1);
    await store.addFriendship(a.id, c.id, 1);
    const friends = await store.listFriends(a.id);
    assert.deepStrictEqual(friends.map((f) => f.id), [b.id, c.id]);
    for (const f of friends) assertPublic(f);
    assert.deepStrictEqual((await store.listFriends(b.id)).map((f) => f.id), [
      a.id,
    ]);
  },

  async "createGroup() makes the owner a member and stops at maxPerOwner"(
    store,
  ) {
    const [owner, other] = await users(store, 2);
    assert.ok(owner && other);
    const spec = { name: "g", ownerId: owner.id, icon: "i", cate: 2, memo: "m" };
    const created = [];
    for (let i = 0; i < 5; i++) {
      created.push(
        await store.createGroup({ ...spec, name: `g${i}` }, {
          now: 10 + i,
          maxPerOwner: 5,
        }),
      );
    }
    const first = created[0];
    assert.ok(first);
    assert.deepStrictEqual(first, {
      id: first.id,
      name: "g0",
      ownerId: owner.id,
      icon: "i",
      cate: 2,
      memo: "m",
      createdAt: 10,
    });
    assert.deepStrictEqual(await store.findGroup(first.id), first);
    assert.equal(await store.findGroup(first.id + 1000), undefined);
    assert.deepStrictEqual(await store.listMembers(first.id), [owner.id]);
    assert.equal(await store.isMember(owner.id, first.id), true);
    await assert.rejects(
      store.createGroup(spec, { now: 20, maxPerOwner: 5 }),
      LimitError,
    );
    assert.deepStrictEqual(await store.listGroups(owner.id), created);
    await assert.rejects(
      store.createGroup({ ...spec, ownerId: other.id }, {
        now: 1,
        maxPerOwner: 0,
      }),
      LimitError,
    );
    await assert.rejects(
      store.createGroup({ ...spec, ownerId: 9999 }, { now: 1, maxPerOwner: 5 }),
      NotFoundError,
    );
  },

  async "createGroup() racing cannot pass the limit"(store) {
    const [owner] = await users(store, 1);
    assert.ok(owner);
    const spec = { name: "g", ownerId: owner.id, icon: "", cate: 0, memo: "" };
    const results = await Promise.allSettled(
      Array.from(
        { length: 12 },
        (_, i) => store.createGroup(spec, { now: i, maxPerOwner: 3 }),
      ),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 3);
    for (const r of results) {
      if (r.status === "rejected") assert.ok(r.reason instanceof LimitError);
    }
    assert.equal((await store.listGroups(owner.id)).length, 3);
  },

  async "joinGroup() is idempotent and rejects unknown groups and users"(store) {
    const [owner, a, b] = await users(store, 3);
    assert.ok(owner && a && b);
    const g = await store.createGroup(
      { name: "g", ownerId: owner.id, icon: "", cate: 0, memo: "" },
      { now: 1, maxPerOwner: 5 },
    );
    const h = await store.createGroup(
      { name: "h", ownerId: owner.id, icon: "", cate: 0, memo: "" },
      { now: 1, maxPerOwner: 5 },
    );
    const raced = await Promise.all(
      Array.from({ length: 10 }, () => store.joinGroup(b.id, g.id, 2)),
    );
    assert.equal(raced.filter((r) => r === "joined").length, 1);
    assert.equal(await store.joinGroup(a.id, g.id, 3), "joined");
    assert.equal(await store.joinGroup(a.id, g.id, 4), "exists");
    assert.equal(await store.joinGroup(a.id, h.id, 4), "joined");
    await assert.rejects(store.joinGroup(a.id, g.id + h.id, 5), NotFoundError);
    await assert.rejects(store.joinGroup(9999, g.id, 5), NotFoundError);
    assert.deepStrictEqual(
      await store.listMembers(g.id),
      [owner.id, a.id, b.id].sort((x, y) => x - y),
    );
    assert.deepStrictEqual(await store.listMembers(9999), []);
    assert.deepStrictEqual((await store.listGroups(a.id)).map((x) => x.id), [
      g.id,
      h.id,
    ]);
    assert.equal(await store.isMember(b.id, h.id), false);
    assert.equal(await store.isMember(b.id, g.id), true);
  },

  async "attachments are recorded once and summed per owner"(store) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    const att = { name: "f1.png", ownerId: a.id, mime: "image/png", size: 100, createdAt: 9 };
    await store.recordAttachment(att);
    await store.recordAttachment({ ...att, name: "f2.png", size: 23 });
    await assert.rejects(store.recordAttachment(att), ConflictError);
    assert.deepStrictEqual(await store.findAttachment("f1.png"), att);
    assert.equal(await store.findAttachment("nope.png"), undefined);
    assert.equal(await store.attachmentBytes(a.id), 123);
    assert.equal(await store.attachmentBytes(b.id), 0);
  },

  async "appendMessage() numbers each conversation 1, 2, 3 and dedups by cid"(
    store,
  ) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    const m1 = await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "x1" }), 100);
    const m2 = await store.appendMessage(newMessage(b.id, { dstid: a.id, cid: "x1" }), 101);
    const m3 = await store.appendMessage(newMessage(a.id, { dstid: c.id, cid: "x2" }), 102);
    const lo = Math.min(a.id, b.id);
    const hi = Math.max(a.id, b.id);
    assert.deepStrictEqual(
      [m1.message.seq, m2.message.seq, m3.message.seq],
      [1, 2, 1],
    );
    assert.equal(m1.message.conv, `u:${lo}:${hi}`);
    assert.equal(m2.message.conv, m1.message.conv);
    assert.equal(m1.duplicate, false);
    assert.deepStrictEqual(m1.message, {
      ...newMessage(a.id, { dstid: b.id, cid: "x1" }),
      id: m1.message.id,
      conv: `u:${lo}:${hi}`,
      seq: 1,
      ts: 100,
    });
    const again = await store.appendMessage(
      newMessage(a.id, { dstid: b.id, cid: "x1", content: "changed" }),
      200,
    );
    assert.deepStrictEqual(again, { message: m1.message, duplicate: true });
    const next = await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "x3" }), 103);
    assert.equal(next.message.seq, 3);
    assert.ok(next.message.id > m1.message.id);
  },

  async "appendMessage() racing one cid stores it once"(store) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    const results = await Promise.all(
      Array.from(
        { length: 20 },
        () => store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "same" }), 1),
      ),
    );
    assert.equal(results.filter((r) => !r.duplicate).length, 1);
    for (const r of results) assert.deepStrictEqual(r.message, results[0]?.message);
    const after = await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "other" }), 2);
    assert.equal(after.message.seq, 2);
  },

  async "appendMessage() keeps seq gap-free under 200 concurrent appends"(
    store,
  ) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    const g = await store.createGroup(
      { name: "g", ownerId: a.id, icon: "", cate: 0, memo: "" },
      { now: 1, maxPerOwner: 5 },
    );
    await store.joinGroup(b.id, g.id, 1);
    const results = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) =>
          store.appendMessage(
            newMessage(i % 2 ? a.id : b.id, { cmd: 11, dstid: g.id, cid: `c${i}` }),
            i,
          ),
      ),
    );
    const seqs = results.map((r) => r.message.seq).sort((x, y) => x - y);
    assert.deepStrictEqual(seqs, Array.from({ length: 200 }, (_, i) => i + 1));
    const stored = await store.listMessages(`g:${g.id}`, { limit: 500 });
    assert.deepStrictEqual(stored.map((m) => m.seq), seqs);
  },

  async "appendMessages() dedups a cid repeated inside a batch and across batches"(store) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    const req = (cid: string, now: number, content?: string) => ({
      message: newMessage(a.id, { dstid: b.id, cid, ...(content ? { content } : {}) }),
      now,
    });
    const first = await store.appendMessages([req("d1", 1), req("d2", 2), req("d1", 3, "again")]);
    const ok = first.map((o) => {
      assert.ok(o.ok, `item failed: ${o.ok ? "" : String(o.error)}`);
      return o.result;
    });
    assert.deepStrictEqual(ok.map((r) => [r.message.cid, r.message.seq, r.duplicate]), [
      ["d1", 1, false],
      ["d2", 2, false],
      ["d1", 1, true],
    ]);
    assert.deepStrictEqual(ok[2]?.message, ok[0]?.message);
    assert.equal(ok[0]?.message.ts, 1);
    const second = await store.appendMessages([req("d2", 4), req("d3", 5), req("d3", 6)]);
    assert.deepStrictEqual(
      second.map((o) => o.ok && [o.result.message.cid, o.result.message.seq, o.result.duplicate]),
      [["d2", 2, true], ["d3", 3, false], ["d3", 3, true]],
    );
    assert.deepStrictEqual(second[0]?.ok && second[0].result.message, ok[1]?.message);
    assert.deepStrictEqual(await store.appendMessages([]), []);
    const conv = ok[0]?.message.conv ?? "";
    const stored = await store.listMessages(conv, { limit: 10 });
    assert.deepStrictEqual(stored.map((m) => [m.cid, m.seq]), [["d1", 1], ["d2", 2], ["d3", 3]]);
  },

  async "appendMessages() numbers mixed conversations in call order"(store) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    const g = await store.createGroup(
      { name: "g", ownerId: a.id, icon: "", cate: 0, memo: "" },
      { now: 1, maxPerOwner: 5 },
    );
    await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: "pre" }), 1);
    const plan: [number, { cmd?: number; dstid: number }][] = [
      [a.id, { dstid: b.id }],
      [a.id, { cmd: 11, dstid: g.id }],
      [b.id, { dstid: a.id }],
      [c.id, { dstid: a.id }],
      [a.id, { cmd: 11, dstid: g.id }],
      [a.id, { dstid: c.id }],
      [b.id, { dstid: a.id }],
    ];
    const outcomes = await store.appendMessages(
      plan.map(([from, to], i) => ({ message: newMessage(from, { ...to, cid: `m${i}` }), now: i })),
    );
    const key = (x: number, y: number) => `u:${Math.min(x, y)}:${Math.max(x, y)}`;
    assert.deepStrictEqual(
      outcomes.map((o) => o.ok && [o.result.message.conv, o.result.message.seq]),
      [
        [key(a.id, b.id), 2],
        [`g:${g.id}`, 1],
        [key(a.id, b.id), 3],
        [key(a.id, c.id), 1],
        [`g:${g.id}`, 2],
        [key(a.id, c.id), 2],
        [key(a.id, b.id), 4],
      ],
    );
    const ids = outcomes.map((o) => o.ok ? o.result.message.id : 0);
    assert.equal(new Set(ids).size, 7);
    assert.deepStrictEqual(
      (await store.listMessages(key(a.id, b.id), { limit: 10 })).map((m) => m.cid),
      ["pre", "m0", "m2", "m6"],
    );
    assert.deepStrictEqual(
      await store.lastSeqs(a.id),
      new Map([[key(a.id, b.id), 4], [key(a.id, c.id), 2], [`g:${g.id}`, 2]]),
    );
  },

  async "appendMessage() concurrent calls get seqs in call order, repeats deduped"(store) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    const results = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) => store.appendMessage(newMessage(a.id, { dstid: b.id, cid: `c${i % 150}` }), i),
      ),
    );
    assert.deepStrictEqual(
      results.map((r) => r.message.seq),
      Array.from({ length: 200 }, (_, i) => (i % 150) + 1),
    );
    assert.deepStrictEqual(
      results.map((r) => r.duplicate),
      Array.from({ length: 200 }, (_, i) => i >= 150),
    );
    for (let i = 150; i < 200; i++) {
      assert.deepStrictEqual(results[i]?.message, results[i - 150]?.message);
    }
  },

  async "listMessages() pages after and before a seq in ascending order"(store) {
    const [a, b] = await users(store, 2);
    assert.ok(a && b);
    for (let i = 1; i <= 10; i++) {
      await store.appendMessage(newMessage(a.id, { dstid: b.id, cid: `m${i}` }), i);
    }
    const conv = `u:${Math.min(a.id, b.id)}:${Math.max(a.id, b.id)}`;
    const seqs = async (o: { afterSeq?: number; beforeSeq?: number; limit: number }) =>
      (await store.listMessages(conv, o)).map((m) => m.seq);
    assert.deepStrictEqual(await seqs({ limit: 3 }), [1, 2, 3]);
    assert.deepStrictEqual(await seqs({ afterSeq: 3, limit: 3 }), [4, 5, 6]);
    assert.deepStrictEqual(await seqs({ afterSeq: 8, limit: 5 }), [9, 10]);
    assert.deepStrictEqual(await seqs({ afterSeq: 10, limit: 5 }), []);
    assert.deepStrictEqual(await seqs({ beforeSeq: 11, limit: 3 }), [8, 9, 10]);
    assert.deepStrictEqual(await seqs({ beforeSeq: 3, limit: 5 }), [1, 2]);
    assert.deepStrictEqual(
      await seqs({ afterSeq: 2, beforeSeq: 9, limit: 3 }),
      [6, 7, 8],
    );
    assert.deepStrictEqual(await seqs({ limit: 0 }), []);
    assert.deepStrictEqual(await store.listMessages("u:998:999", { limit: 5 }), []);
  },

  async "lastSeqs() covers the user's 1:1 conversations and groups only"(store) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    const g = await store.createGroup(
      { name: "g", ownerId: b.id, icon: "", cate: 0, memo: "" },
      { now: 1, maxPerOwner: 5 },
    );
    const h = await store.createGroup(
      { name: "h", ownerId: c.id, icon: "", cate: 0, memo: "" },
      { now: 1, maxPerOwner: 5 },
    );
    await store.joinGroup(a.id, g.id, 1);
    const send = (from: number, to: { cmd?: number; dstid: number }, cid: string) =>
      store.appendMessage(newMessage(from, { ...to, cid }), 1);
    await send(a.id, { dstid: b.id }, "1");
    await send(b.id, { dstid: a.id }, "2");
    await send(c.id, { dstid: a.id }, "3");
    await send(b.id, { dstid: c.id }, "4");
    await send(b.id, { cmd: 11, dstid: g.id }, "5");
    await send(c.id, { cmd: 11, dstid: h.id }, "6");
    const key = (x: number, y: number) => `u:${Math.min(x, y)}:${Math.max(x, y)}`;
    assert.deepStrictEqual(
      await store.lastSeqs(a.id),
      new Map([[key(a.id, b.id), 2], [key(a.id, c.id), 1], [`g:${g.id}`, 1]]),
    );
    assert.deepStrictEqual(
      await store.lastSeqs(c.id),
      new Map([[key(a.id, c.id), 1], [key(b.id, c.id), 1], [`g:${h.id}`, 1]]),
    );
    assert.deepStrictEqual(await store.lastSeqs(9999), new Map());
  },

  async "recentHeads() gives each conversation's newest seq among the last messages since a time"(
    store,
  ) {
    const [a, b, c] = await users(store, 3);
    assert.ok(a && b && c);
    const send = (from: number, to: number, cid: string, ts: number) =>
      store.appendMessage(newMessage(from, { dstid: to, cid }), ts);
    await send(a.id, b.id, "1", 100); // a-b seq 1, too old below
    await send(a.id, c.id, "2", 100); // a-c seq 1, too old
    await send(b.id, a.id, "3", 200); // a-b seq 2
    await send(c.id, b.id, "4", 200); // b-c seq 1
    await send(a.id, b.id, "5", 300); // a-b seq 3
    const key = (x: number, y: number) => `u:${Math.min(x, y)}:${Math.max(x, y)}`;
    const heads = async (since: number, limit: number) =>
      Object.fromEntries(
        (await store.recentHeads(since, limit)).map((h) => [h.conv, h.seq]),
      );
    assert.deepStrictEqual(await heads(150, 100), { [key(a.id, b.id)]: 3, [key(b.id, c.id)]: 1 });
    assert.deepStrictEqual(await heads(0, 100), {
      [key(a.id, b.id)]: 3,
      [key(a.id, c.id)]: 1,
      [key(b.id, c.id)]: 1,
    });
    // Only the last two rows are looked at: a-b's seq 3 and b-c's seq 1.
    assert.deepStrictEqual(await heads(0, 2), { [key(a.id, b.id)]: 3, [key(b.id, c.id)]: 1 });
    assert.deepStrictEqual(await heads(400, 100), {});
    assert.deepStrictEqual(await heads(0, 0), {});
  },

  async "ping() answers and close() is idempotent"(store) {
    await store.ping();
    await store.close();
    await store.close();
  },
};
