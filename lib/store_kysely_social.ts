/**
 * The social half of the Kysely store: friendships and groups, with the
 * uniqueness and limit rules enforced inside transactions so they hold when
 * requests race.
 *
 * @module
 */

import { LimitError, NotFoundError } from "./errors.ts";
import { type Group, GROUP_REPEAT_WINDOW_MS, type NewGroup, type PublicUser } from "./store.ts";
import { PUBLIC_USER_COLUMNS, type StoreDb, toGroup, toPublicUser } from "./_store_kysely_rows.ts";

/**
 * Make `a` and `b` friends both ways in one transaction. The (low, high)
 * row goes in first on every call, so two racing calls queue on the same
 * unique key instead of deadlocking; `ON CONFLICT DO NOTHING` keeps one row
 * per direction.
 */
export async function addFriendship(
  store: StoreDb,
  pair: { a: number; b: number },
  now: number,
): Promise<"added" | "exists"> {
  const { a, b } = pair;
  if (a === b) throw new RangeError("Cannot befriend oneself");
  const [lo, hi] = a < b ? [a, b] : [b, a];
  return await store.db.transaction().execute(async (trx) => {
    const found = await trx.selectFrom("users").select("id")
      .where("id", "in", [lo, hi]).execute();
    if (found.length !== 2) {
      throw new NotFoundError("User not found");
    }
    const added = await trx.insertInto("contacts")
      .values({ owner_id: lo, dst_id: hi, created_at: now })
      .onConflict((oc) => oc.columns(["owner_id", "dst_id"]).doNothing())
      .returning("owner_id")
      .executeTakeFirst();
    await trx.insertInto("contacts")
      .values({ owner_id: hi, dst_id: lo, created_at: now })
      .onConflict((oc) => oc.columns(["owner_id", "dst_id"]).doNothing())
      .execute();
    return added === undefined ? "exists" : "added";
  });
}

/** The friends of `userId`, ordered by id. */
export async function listFriends(
  store: StoreDb,
  userId: number,
): Promise<PublicUser[]> {
  const rows = await store.db.selectFrom("contacts")
    .innerJoin("users", "users.id", "contacts.dst_id")
    .select(PUBLIC_USER_COLUMNS.map((c) => `users.${c}` as const))
    .where("contacts.owner_id", "=", userId)
    .orderBy("users.id")
    .execute();
  return rows.map(toPublicUser);
}

/** Whether `a` and `b` are friends. */
export async function areFriends(
  store: StoreDb,
  pair: { a: number; b: number },
): Promise<boolean> {
  const row = await store.db.selectFrom("contacts").select("owner_id")
    .where("owner_id", "=", pair.a).where("dst_id", "=", pair.b)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Create a group and its owner's membership in one transaction. The limit
 * is counted inside it: SQLite's `BEGIN IMMEDIATE` serialises writers, and
 * on Postgres the owner's row is locked `FOR UPDATE` first, so two racing
 * creates cannot both pass. The same lock makes a repeat see the group its
 * first try made ({@linkcode GROUP_REPEAT_WINDOW_MS}).
 */
export async function createGroup(
  store: StoreDb,
  group: NewGroup,
  options: { now: number; maxPerOwner: number },
): Promise<Group> {
  return await store.db.transaction().execute(async (trx) => {
    const owner = await trx.selectFrom("users").select("id")
      .where("id", "=", group.ownerId)
      .$if(store.dialect === "postgres", (qb) => qb.forUpdate())
      .executeTakeFirst();
    if (owner === undefined) throw new NotFoundError("User not found");
    // A retry of a create whose answer was lost after it committed gets that group.
    const made = await trx.selectFrom("chat_groups").selectAll()
      .where("owner_id", "=", group.ownerId)
      .where("name", "=", group.name)
      .where("icon", "=", group.icon)
      .where("cate", "=", group.cate)
      .where("memo", "=", group.memo)
      .where("created_at", ">=", options.now - GROUP_REPEAT_WINDOW_MS)
      .orderBy("id")
      .executeTakeFirst();
    if (made !== undefined) return toGroup(made);
    const { count } = await trx.selectFrom("chat_groups")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("owner_id", "=", group.ownerId)
      .executeTakeFirstOrThrow();
    if (Number(count) >= options.maxPerOwner) {
      throw new LimitError(
        `Cannot create group: at most ${options.maxPerOwner} groups per user`,
      );
    }
    const row = await trx.insertInto("chat_groups")
      .values({
        name: group.name,
        owner_id: group.ownerId,
        icon: group.icon,
        cate: group.cate,
        memo: group.memo,
        created_at: options.now,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await trx.insertInto("memberships")
      .values({ group_id: row.id, user_id: group.ownerId, created_at: options.now })
      .execute();
    return toGroup(row);
  });
}

/** The group with this id, or undefined. */
export async function findGroup(
  store: StoreDb,
  id: number,
): Promise<Group | undefined> {
  const row = await store.db.selectFrom("chat_groups").selectAll()
    .where("id", "=", id).executeTakeFirst();
  return row === undefined ? undefined : toGroup(row);
}

/** Add `userId` to `groupId`; "exists" if already a member. */
export async function joinGroup(
  store: StoreDb,
  member: { userId: number; groupId: number },
  now: number,
): Promise<"joined" | "exists"> {
  const { userId, groupId } = member;
  return await store.db.transaction().execute(async (trx) => {
    const group = await trx.selectFrom("chat_groups").select("id")
      .where("id", "=", groupId).executeTakeFirst();
    if (group === undefined) throw new NotFoundError("Group not found");
    const user = await trx.selectFrom("users").select("id")
      .where("id", "=", userId).executeTakeFirst();
    if (user === undefined) throw new NotFoundError("User not found");
    const added = await trx.insertInto("memberships")
      .values({ group_id: groupId, user_id: userId, created_at: now })
      .onConflict((oc) => oc.columns(["group_id", "user_id"]).doNothing())
      .returning("user_id")
      .executeTakeFirst();
    return added === undefined ? "exists" : "joined";
  });
}

/** The groups `userId` belongs to, ordered by id. */
export async function listGroups(
  store: StoreDb,
  userId: number,
): Promise<Group[]> {
  const build = () =>
    store.db.selectFrom("memberships")
      .innerJoin("chat_groups", "chat_groups.id", "memberships.group_id")
      .selectAll("chat_groups")
      .where("memberships.user_id", "=", userId)
      .orderBy("chat_groups.id");
  const rows = store.reused === undefined
    ? await build().execute()
    : await store.reused.rows(store.db, "listGroups", build, [userId]);
  return rows.map(toGroup);
}

/** The member ids of `groupId`, ascending. */
export async function listMembers(
  store: StoreDb,
  groupId: number,
): Promise<number[]> {
  const rows = await store.db.selectFrom("memberships").select("user_id")
    .where("group_id", "=", groupId).orderBy("user_id").execute();
  return rows.map((r) => Number(r.user_id));
}

/** Whether `userId` is a member of `groupId`. */
export async function isMember(
  store: StoreDb,
  member: { userId: number; groupId: number },
): Promise<boolean> {
  const row = await store.db.selectFrom("memberships").select("user_id")
    .where("group_id", "=", member.groupId)
    .where("user_id", "=", member.userId)
    .executeTakeFirst();
  return row !== undefined;
}
