/**
 * What the store tests share: sample rows (a registration, a message, a
 * number of stored users, a plain group) and the module of the SQLite append worker.
 *
 * @module
 */

import type { AppendRequest, Group, NewMessage, NewUser, PublicUser, Store } from "../lib/store.ts";
import { openKyselyStore } from "../lib/store_kysely.ts";

/** The SQLite append worker module, for stores opened with `appendWorker`. */
export const APPEND_WORKER = new URL("../lib/_sqlite_append_worker.ts", import.meta.url);

/** One contract case: runs against a fresh, empty store. */
export type StoreCase = (store: Store) => Promise<void>;

/** The password hash every sample user has (tests check it never leaks). */
export const HASH = "$scrypt$secret-hash-value";

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

/** `n` stored users, mobiles 13800001000 upwards. */
export async function users(store: Store, n: number): Promise<PublicUser[]> {
  const out: PublicUser[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await store.createUser(newUser(`1380000${1000 + i}`), 1000 + i));
  }
  return out;
}

/** A group `name` of `ownerId`, created at time 1 (an owner may have 5). */
export function plainGroup(store: Store, ownerId: number, name = "g"): Promise<Group> {
  return store.createGroup(
    { name, ownerId, icon: "", cate: 0, memo: "" },
    { now: 1, maxPerOwner: 5 },
  );
}

/** Migrate a new SQLite file at `path` with two users; returns their ids. */
export async function twoUsers(path: string): Promise<[number, number]> {
  const setup = await openKyselyStore({ kind: "sqlite", path });
  try {
    const ann = await setup.createUser(newUser("13800000001"), 1);
    const bob = await setup.createUser(newUser("13800000002"), 1);
    return [ann.id, bob.id];
  } finally {
    await setup.close();
  }
}

/** `n` append requests from `from` to `to`, cids `${tag}-0`, `${tag}-1`, … */
export function requests(
  from: number,
  to: number,
  n: number,
  tag: string,
  content?: string,
): AppendRequest[] {
  return Array.from({ length: n }, (_, i) => ({
    message: newMessage(from, {
      dstid: to,
      cid: `${tag}-${i}`,
      ...(content === undefined ? {} : { content }),
    }),
    now: 2,
  }));
}
