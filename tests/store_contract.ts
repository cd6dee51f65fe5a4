/**
 * The {@linkcode Store} contract: one suite every implementation must pass.
 * `storeContract(name, open)` registers the cases as `Deno.test`s; each case
 * opens a fresh, empty store and disposes of it afterwards.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConflictError, LimitError, NotFoundError } from "../lib/errors.ts";
import { GROUP_REPEAT_WINDOW_MS, type PublicUser, type Store } from "../lib/store.ts";
import { MESSAGE_CASES } from "./_store_contract_messages.ts";
import { HASH, newUser, plainGroup, type StoreCase, users } from "./_store_samples.ts";

/** A fresh, empty store and how to throw it away (close, drop schema, …). */
export interface StoreFixture extends AsyncDisposable {
  readonly store: Store;
}

/** Options for {@linkcode storeContract}. */
export interface StoreContractOptions {
  /** Skip the whole suite (e.g. no Postgres URL). @default {false} */
  ignore?: boolean;
}

function assertPublic(user: PublicUser): void {
  const json = JSON.stringify(user);
  assert.ok(!json.includes(HASH), `password hash leaked: ${json}`);
  assert.deepStrictEqual(
    Object.keys(user).sort(),
    ["avatar", "createdAt", "id", "memo", "mobile", "nickname", "sex"],
  );
}

/** Register the contract's `Deno.test`s for the store `open` makes. */
export function storeContract(
  name: string,
  open: () => Promise<StoreFixture>,
  options: StoreContractOptions = {},
): void {
  for (const [title, fn] of Object.entries({ ...CASES, ...MESSAGE_CASES })) {
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

/** The account, social and attachment cases, by title (messages: `_store_contract_messages.ts`). */
const CASES: Record<string, StoreCase> = {
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
        (_, i) => store.createGroup({ ...spec, name: `g${i}` }, { now: i, maxPerOwner: 3 }),
      ),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 3);
    for (const r of results) {
      if (r.status === "rejected") assert.ok(r.reason instanceof LimitError);
    }
    assert.equal((await store.listGroups(owner.id)).length, 3);
  },

  async "createGroup() repeated within a minute returns the first group (a retry after a lost answer)"(
    store,
  ) {
    const [owner, other] = await users(store, 2);
    assert.ok(owner && other);
    const spec = { name: "Chess", ownerId: owner.id, icon: "i", cate: 1, memo: "m" };
    const first = await store.createGroup(spec, { now: 1_000_000, maxPerOwner: 2 });
    const raced = await Promise.all(
      Array.from(
        { length: 6 },
        () => store.createGroup(spec, { now: 1_000_000 + GROUP_REPEAT_WINDOW_MS, maxPerOwner: 2 }),
      ),
    );
    assert.deepStrictEqual(raced, raced.map(() => first), "repeats, racing too, get the first");
    assert.deepStrictEqual(await store.listMembers(first.id), [owner.id]);
    // Anything else is a new group: another field, another owner, or later than the window.
    const icon = await store.createGroup({ ...spec, icon: "j" }, {
      now: 1_000_001,
      maxPerOwner: 2,
    });
    assert.notEqual(icon.id, first.id);
    const theirs = await store.createGroup({ ...spec, ownerId: other.id }, {
      now: 1_000_001,
      maxPerOwner: 2,
    });
    assert.notEqual(theirs.id, first.id);
    // At the limit a repeat still answers its group; a new one is refused.
    const limit = { now: 1_000_002, maxPerOwner: 2 };
    assert.equal((await store.createGroup(spec, limit)).id, first.id);
    await assert.rejects(store.createGroup({ ...spec, memo: "n" }, limit), LimitError);
    const later = { now: 1_000_001 + GROUP_REPEAT_WINDOW_MS, maxPerOwner: 3 };
    assert.notEqual((await store.createGroup(spec, later)).id, first.id, "past the window");
    assert.equal((await store.listGroups(owner.id)).length, 3);
  },

  async "joinGroup() is idempotent and rejects unknown groups and users"(store) {
    const [owner, a, b] = await users(store, 3);
    assert.ok(owner && a && b);
    const g = await plainGroup(store, owner.id);
    const h = await plainGroup(store, owner.id, "h");
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

  async "ping() answers and close() is idempotent"(store) {
    await store.ping();
    await store.close();
    await store.close();
  },
};
