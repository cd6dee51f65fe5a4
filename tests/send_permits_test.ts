import assert from "node:assert/strict";
import { type PermitStore, SendPermits } from "../lib/send_permits.ts";
import type { PublicUser } from "../lib/store.ts";
import { startChatServer } from "./_chat_helpers.ts";

type Frame = Record<string, unknown>;

/** A store with a fixed set of friendships, memberships and users that records every call. */
function recordingStore(
  granted: { friends?: [number, number][]; members?: [number, number][]; users?: number[] },
) {
  const calls: string[] = [];
  const friends = new Set((granted.friends ?? []).flatMap(([a, b]) => [`${a}:${b}`, `${b}:${a}`]));
  const members = new Set((granted.members ?? []).map(([u, g]) => `${u}:${g}`));
  const users = new Set(granted.users ?? []);
  const store: PermitStore = {
    areFriends(a, b) {
      calls.push(`areFriends ${a} ${b}`);
      return Promise.resolve(friends.has(`${a}:${b}`));
    },
    isMember(userId, groupId) {
      calls.push(`isMember ${userId} ${groupId}`);
      return Promise.resolve(members.has(`${userId}:${groupId}`));
    },
    findUser(id) {
      calls.push(`findUser ${id}`);
      const user = { id, mobile: "", nickname: "", avatar: "", sex: "U", memo: "", createdAt: 0 };
      return Promise.resolve(users.has(id) ? user as PublicUser : undefined);
    },
  };
  return { store, calls, friends, members };
}

Deno.test("SendPermits asks the store once per granted pair, both directions of a friendship", async () => {
  const { store, calls } = recordingStore({ friends: [[1, 2]], members: [[1, 7]], users: [5] });
  const permits = new SendPermits(store);
  assert.equal(await permits.areFriends(1, 2), true);
  assert.equal(await permits.areFriends(2, 1), true);
  assert.equal(await permits.areFriends(1, 2), true);
  assert.equal(await permits.isMember(1, 7), true);
  assert.equal(await permits.isMember(1, 7), true);
  assert.equal(await permits.userExists(5), true);
  assert.equal(await permits.userExists(5), true);
  assert.deepStrictEqual(calls, ["areFriends 1 2", "isMember 1 7", "findUser 5"]);
  assert.equal(permits.size, 3);
});

Deno.test("SendPermits' granted* answer from the cache alone: a remembered yes, never a no, forgotten on revoke", async () => {
  const { store, calls } = recordingStore({ friends: [[1, 2]], members: [[1, 7]], users: [5] });
  const permits = new SendPermits(store);
  assert.deepStrictEqual(
    [permits.grantedFriends(1, 2), permits.grantedMember(1, 7), permits.grantedUser(5)],
    [false, false, false],
  );
  assert.deepStrictEqual(calls, [], "the granted* checks never ask the store");
  await permits.areFriends(1, 2);
  await permits.isMember(1, 7);
  await permits.userExists(5);
  await permits.areFriends(1, 3); // a no
  assert.deepStrictEqual(
    [
      permits.grantedFriends(2, 1),
      permits.grantedMember(1, 7),
      permits.grantedUser(5),
      permits.grantedFriends(1, 3),
      permits.grantedMember(7, 1),
    ],
    [true, true, true, false, false],
  );
  permits.revokeFriendship(2, 1);
  permits.revokeMembership(1, 7);
  assert.deepStrictEqual([permits.grantedFriends(1, 2), permits.grantedMember(1, 7)], [
    false,
    false,
  ]);
  assert.equal(calls.length, 4);
});

Deno.test("SendPermits never remembers a no: a friendship or join added later counts at once", async () => {
  const { store, calls, friends, members } = recordingStore({});
  const permits = new SendPermits(store);
  assert.equal(await permits.areFriends(1, 2), false);
  assert.equal(await permits.isMember(1, 7), false);
  assert.equal(await permits.userExists(9), false);
  friends.add("1:2").add("2:1");
  members.add("1:7");
  assert.equal(await permits.areFriends(1, 2), true);
  assert.equal(await permits.isMember(1, 7), true);
  assert.equal(await permits.areFriends(2, 1), true);
  assert.deepStrictEqual(calls, [
    "areFriends 1 2",
    "isMember 1 7",
    "findUser 9",
    "areFriends 1 2",
    "isMember 1 7",
  ]);
  assert.equal(permits.size, 2);
});

Deno.test("SendPermits revokes, also over a check in flight, and evicts the least recently used", async () => {
  const { store, calls, friends } = recordingStore({ friends: [[1, 2], [1, 3], [1, 4]] });
  const permits = new SendPermits(store, { maxEntries: 2 });
  await permits.areFriends(1, 2);
  await permits.areFriends(1, 3);
  await permits.areFriends(1, 2); // 1:2 becomes the most recent
  await permits.areFriends(1, 4); // evicts 1:3
  assert.equal(permits.size, 2);
  calls.length = 0;
  await permits.areFriends(1, 2);
  await permits.areFriends(1, 3);
  assert.deepStrictEqual(calls, ["areFriends 1 3"]);
  // A revoke drops the entry; a yes fetched before the revoke is not kept.
  friends.delete("1:3");
  friends.delete("3:1");
  permits.revokeFriendship(3, 1);
  assert.equal(await permits.areFriends(1, 3), false);
  const inFlight = permits.areFriends(1, 4);
  permits.revokeFriendship(1, 4);
  assert.equal(await inFlight, true);
  calls.length = 0;
  await permits.areFriends(1, 4);
  assert.deepStrictEqual(calls, ["areFriends 1 4"]);
});

Deno.test("/chat lets a refused sender through once the friendship and the join exist", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  const group = await srv.store.createGroup(
    { name: "g", ownerId: bob.id, icon: "", cate: 0, memo: "" },
    { now: 0, maxPerOwner: 5 },
  );
  const a = await srv.connect(ann);
  const reply = (cid: string) => (f: Frame) =>
    (f["cmd"] === 20 || f["cmd"] === 21) && f["cid"] === cid;
  a.send({ cmd: 10, dstid: bob.id, media: 1, content: "1", cid: "r1" });
  a.send({ cmd: 11, dstid: group.id, media: 1, content: "2", cid: "r2" });
  const refused = [...await a.waitFor(reply("r1")), ...await a.waitFor(reply("r2"))];
  assert.deepStrictEqual(refused.map((f) => [f["cmd"], f["code"]]), [
    [21, "forbidden"],
    [21, "forbidden"],
  ]);
  await srv.store.addFriendship(ann.id, bob.id, 1);
  await srv.store.joinGroup(ann.id, group.id, 1);
  for (const cid of ["s1", "s2"]) {
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: cid, cid });
    a.send({ cmd: 11, dstid: group.id, media: 1, content: cid, cid: `g${cid}` });
  }
  const acks = [];
  for (const cid of ["s1", "gs1", "s2", "gs2"]) acks.push(...await a.waitFor(reply(cid)));
  assert.deepStrictEqual(acks.map((f) => [f["cmd"], f["cid"], f["seq"]]), [
    [20, "s1", 1],
    [20, "gs1", 1],
    [20, "s2", 2],
    [20, "gs2", 2],
  ]);
});
