import assert from "node:assert/strict";
import { LocalBus } from "../lib/bus_local.ts";
import { ChatService } from "../lib/chat_service.ts";
import { type DeliveryTarget, Dispatcher, type MembershipStore } from "../lib/dispatcher.ts";
import type { Group, StoredMessage } from "../lib/store.ts";
import { MemoryStore } from "../lib/store_memory.ts";
import { FakeConnection, ManualTimers } from "./_chat_helpers.ts";

/** Membership from a table; records each lookup; can be held or made to fail. */
class FakeMembership implements MembershipStore {
  readonly calls: number[] = [];
  gate: Promise<void> | undefined;
  fail = false;
  constructor(readonly groups: Record<number, number[]>) {}
  listMembers(groupId: number): Promise<number[]> {
    if (this.fail) return Promise.reject(new Error("store down"));
    const users = Object.entries(this.groups).filter(([, ids]) => ids.includes(groupId));
    return Promise.resolve(users.map(([userId]) => Number(userId)));
  }
  async listGroups(userId: number): Promise<Group[]> {
    this.calls.push(userId);
    if (this.gate) await this.gate;
    if (this.fail) throw new Error("store down");
    return (this.groups[userId] ?? []).map((id) => ({
      id,
      name: `g${id}`,
      ownerId: 1,
      icon: "",
      cate: 0,
      memo: "",
      createdAt: 0,
    }));
  }
}

/** The dispatcher's tables when nobody is connected. */
const NOTHING = { users: 0, sessions: 0, groups: 0, memberships: 0, loading: 0 };

/** A target that records what it got. */
class Recorder implements DeliveryTarget {
  readonly got: number[] = [];
  readonly joins: string[] = [];
  constructor(readonly id: string, readonly userId: number) {}
  joined(conv: string): void {
    this.joins.push(conv);
  }
  deliver(message: StoredMessage, text: string): void {
    assert.equal(JSON.parse(text).seq, message.seq);
    this.got.push(message.seq);
  }
}

function msg(
  cmd: 10 | 11,
  userid: number,
  dstid: number,
  seq: number,
): StoredMessage {
  return {
    id: seq,
    userid,
    cmd,
    dstid,
    media: 1,
    content: "x",
    pic: "",
    url: "",
    memo: "",
    amount: 0,
    cid: `c${seq}`,
    conv: cmd === 11 ? `g:${dstid}` : `u:${Math.min(userid, dstid)}:${Math.max(userid, dstid)}`,
    seq,
    ts: 0,
  };
}

Deno.test("Dispatcher keeps every session of a user; a second tab evicts nobody", async () => {
  const d = new Dispatcher(new FakeMembership({}));
  const tab1 = new Recorder("a1", 1);
  const tab2 = new Recorder("a2", 1);
  const bob = new Recorder("b1", 2);
  await d.add(tab1);
  await d.add(tab2);
  await d.add(bob);
  // Bob → Ann reaches both of Ann's tabs and Bob's own session (his other device).
  assert.equal(d.deliver(msg(10, 2, 1, 1)), 3);
  // Ann sends from tab1: tab1 is excluded (it got an ack), tab2 and Bob get it.
  assert.equal(d.deliver(msg(10, 1, 2, 2), { exceptSession: "a1" }), 2);
  assert.deepStrictEqual(tab1.got, [1]);
  assert.deepStrictEqual(tab2.got, [1, 2]);
  assert.deepStrictEqual(bob.got, [1, 2]);
  assert.deepStrictEqual(d.stats(), {
    users: 2,
    sessions: 3,
    groups: 0,
    memberships: 0,
    loading: 0,
  });
});

Deno.test("Dispatcher: a session leaving while it takes a message costs its siblings nothing", async () => {
  const d = new Dispatcher(new FakeMembership({ 1: [10] }));
  const tabs = [new Recorder("a1", 1), new Recorder("a2", 1), new Recorder("a3", 1)];
  // The first tab closes itself (and is removed) as it takes the message.
  const leaving = Object.assign(tabs[0]!, {
    deliver(message: StoredMessage, text: string) {
      Recorder.prototype.deliver.call(leaving, message, text);
      d.remove(leaving);
    },
  });
  for (const t of tabs) await d.add(t);
  await d.add(tabs[1]!); // a repeated add keeps one entry
  assert.equal(d.deliver(msg(10, 2, 1, 1)), 3);
  assert.equal(d.deliver(msg(11, 2, 10, 2)), 2);
  assert.deepStrictEqual(tabs.map((t) => t.got), [[1], [1, 2], [1, 2]]);
  assert.equal(d.stats().sessions, 2);
});

Deno.test("Dispatcher routes group messages through its index to local members only", async () => {
  const membership = new FakeMembership({ 1: [10, 11], 2: [10], 3: [11] });
  const d = new Dispatcher(membership);
  const ann = new Recorder("a", 1);
  const ann2 = new Recorder("a2", 1);
  const bob = new Recorder("b", 2);
  const cat = new Recorder("c", 3);
  for (const t of [ann, ann2, bob, cat]) await d.add(t);
  // Groups are loaded once per user, not once per session.
  assert.deepStrictEqual(membership.calls, [1, 2, 3]);
  assert.equal(d.deliver(msg(11, 2, 10, 1), { exceptSession: "b" }), 2);
  assert.equal(d.deliver(msg(11, 3, 11, 1)), 3);
  assert.equal(d.deliver(msg(11, 3, 99, 1)), 0);
  assert.deepStrictEqual([ann.got, ann2.got, bob.got, cat.got], [
    [1, 1],
    [1, 1],
    [],
    [1],
  ]);
  assert.deepStrictEqual(d.stats(), {
    users: 3,
    sessions: 4,
    groups: 2,
    memberships: 4,
    loading: 0,
  });
});

Deno.test("Dispatcher.memberJoined() updates the index at once", async () => {
  const d = new Dispatcher(new FakeMembership({}));
  const bob = new Recorder("b", 2);
  await d.add(bob);
  assert.equal(d.deliver(msg(11, 1, 7, 1)), 0);
  d.memberJoined(7, 2);
  d.memberJoined(7, 2); // idempotent
  d.memberJoined(7, 3); // not connected here: nothing indexed
  assert.equal(d.deliver(msg(11, 1, 7, 2)), 1);
  assert.deepStrictEqual(bob.got, [2]);
  assert.deepStrictEqual(bob.joins, ["g:7"], "each session told once, to follow the group");
  assert.deepStrictEqual(d.stats().memberships, 1);
  d.remove(bob);
  assert.deepStrictEqual(d.stats(), NOTHING);
});

/** A dispatcher whose group load for Ann (user 1, in `groups`) waits for `open()`. */
function heldLoad(groups: number[]) {
  const membership = new FakeMembership({ 1: groups });
  let open!: () => void;
  membership.gate = new Promise((r) => open = r);
  const d = new Dispatcher(membership);
  const ann = new Recorder("a", 1);
  return { d, ann, adding: d.add(ann), open };
}

Deno.test("Dispatcher.add() leaks nothing when the user leaves while groups load", async () => {
  const { d, ann, adding, open } = heldLoad([5]);
  assert.equal(d.stats().loading, 1);
  d.remove(ann);
  open();
  await adding;
  assert.deepStrictEqual(d.stats(), NOTHING);
});

Deno.test("Dispatcher keeps a group joined while the user's list loads, and cleans both up", async () => {
  const { d, ann, adding, open } = heldLoad([5]);
  d.memberJoined(6, 1); // the join lands before the store answers
  open();
  await adding;
  assert.equal(d.deliver(msg(11, 2, 5, 1)), 1);
  assert.equal(d.deliver(msg(11, 2, 6, 2)), 1);
  assert.deepStrictEqual(d.stats().memberships, 2);
  assert.deepStrictEqual(d.groupsOf(1), [5, 6]);
  d.remove(ann);
  assert.deepStrictEqual(d.groupsOf(1), []);
  assert.deepStrictEqual(d.stats(), NOTHING);
});

Deno.test("Dispatcher.resyncGroups() indexes members connected here whose join was never announced", async () => {
  const membership = new FakeMembership({ 1: [], 2: [] });
  const d = new Dispatcher(membership);
  const ann = new Recorder("a", 1);
  const cat = new Recorder("c", 3); // connected, not a member
  await d.add(ann);
  await d.add(cat);
  // Ann joined group 7 through another node, and its announcement was lost.
  membership.groups[1] = [7];
  membership.groups[2] = [7]; // a member not connected here
  assert.equal(d.deliver(msg(11, 2, 7, 1)), 0, "unknown to the index");
  assert.equal(await d.resyncGroups([7, 8]), 1);
  assert.deepStrictEqual(ann.joins, ["g:7"]);
  assert.equal(d.deliver(msg(11, 2, 7, 2)), 1);
  assert.deepStrictEqual(ann.got, [2]);
  assert.deepStrictEqual(cat.got, []);
  assert.equal(await d.resyncGroups([7]), 0, "known now: nothing to add");
  assert.deepStrictEqual(ann.joins, ["g:7"]);
  membership.fail = true;
  assert.equal(await d.resyncGroups([9]), 0, "a store failure is logged, not thrown");
  d.remove(ann);
  d.remove(cat);
  assert.deepStrictEqual(d.stats(), NOTHING);
});

Deno.test("Dispatcher.add() removes the session again when the store fails", async () => {
  const membership = new FakeMembership({});
  membership.fail = true;
  const d = new Dispatcher(membership);
  await assert.rejects(d.add(new Recorder("a", 1)), /store down/);
  assert.equal(d.stats().sessions, 0);
  assert.equal(d.stats().users, 0);
});

Deno.test("ChatService leaves no session, map entry or timer after 1,000 connect/disconnect cycles", async () => {
  const store = new MemoryStore();
  const users = [];
  for (let i = 0; i < 5; i++) {
    const u = await store.createUser({
      mobile: `1380000000${i}`,
      passwordHash: "x",
      nickname: `u${i}`,
      avatar: "",
      sex: "U",
      memo: "",
    }, 0);
    users.push(u.id);
  }
  const first = users[0]!;
  const group = await store.createGroup(
    { name: "g", ownerId: first, icon: "", cate: 0, memo: "" },
    { now: 0, maxPerOwner: 5 },
  );
  for (const id of users.slice(1)) await store.joinGroup(id, group.id, 0);
  const timers = new ManualTimers();
  const bus = new LocalBus();
  const chat = new ChatService({ store, bus, session: { timers } });
  const open = [];
  for (let i = 0; i < 1000; i++) {
    const conn = new FakeConnection();
    const session = chat.open(conn, users[i % users.length]!, {
      stillValid: () => Promise.resolve(true),
    });
    open.push({ session, conn });
    // Half close from our side, half from the peer; some stay open a while.
    if (open.length > 7) {
      const { session: s } = open.shift()!;
      if (i % 2 === 0) s.close("normal");
      else s.closedByPeer(1001);
    }
    if (i % 100 === 0) await new Promise((r) => setTimeout(r, 0));
  }
  await new Promise((r) => setTimeout(r, 0));
  const mid = chat.stats();
  assert.equal(mid.sessions, 7);
  assert.equal(mid.memberships, users.length);
  for (const { session } of open) session.closedByPeer();
  assert.deepStrictEqual(chat.stats(), { ...NOTHING, entries: 0 });
  assert.equal(timers.pending, 0, "every idle and recheck timer was cleared");
  chat.close();
  await bus.close();
  await store.close();
});
