/**
 * The accounts part of the Kysely store: users, login tokens and uploaded
 * attachments, with the store's unique and foreign-key violations turned
 * into typed errors.
 *
 * @module
 */

import { sql } from "kysely";
import { ConflictError, NotFoundError } from "./errors.ts";
import type { Attachment, NewUser, ProfilePatch, PublicUser } from "./store.ts";
import {
  isForeignKeyViolation,
  isUniqueViolation,
  PUBLIC_USER_COLUMNS,
  type StoreDb,
  toPublicUser,
} from "./_store_kysely_rows.ts";

/** Insert a user; ConflictError when the mobile number is taken. */
export async function createUser(
  store: StoreDb,
  user: NewUser,
  now: number,
): Promise<PublicUser> {
  try {
    const row = await store.db.insertInto("users")
      .values({
        mobile: user.mobile,
        password_hash: user.passwordHash,
        nickname: user.nickname,
        avatar: user.avatar,
        sex: user.sex,
        memo: user.memo,
        created_at: now,
      })
      .returning(PUBLIC_USER_COLUMNS)
      .executeTakeFirstOrThrow();
    return toPublicUser(row);
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw new ConflictError("Mobile number already registered", {
        cause: error,
      });
    }
    throw error;
  }
}

/** The public fields of user `id`. */
export async function findUser(
  store: StoreDb,
  id: number,
): Promise<PublicUser | undefined> {
  const row = await store.db.selectFrom("users")
    .select(PUBLIC_USER_COLUMNS).where("id", "=", id).executeTakeFirst();
  return row === undefined ? undefined : toPublicUser(row);
}

/** The user with `mobile` and their password hash, for login. */
export async function findCredentials(
  store: StoreDb,
  mobile: string,
): Promise<{ user: PublicUser; passwordHash: string } | undefined> {
  const row = await store.db.selectFrom("users")
    .select([...PUBLIC_USER_COLUMNS, "password_hash"])
    .where("mobile", "=", mobile).executeTakeFirst();
  if (row === undefined) return undefined;
  return { user: toPublicUser(row), passwordHash: row.password_hash };
}

/** Set the given profile fields; the user after it, undefined if none. */
export async function updateProfile(
  store: StoreDb,
  id: number,
  patch: ProfilePatch,
): Promise<PublicUser | undefined> {
  const set: ProfilePatch = {
    ...(patch.nickname === undefined ? {} : { nickname: patch.nickname }),
    ...(patch.avatar === undefined ? {} : { avatar: patch.avatar }),
    ...(patch.sex === undefined ? {} : { sex: patch.sex }),
    ...(patch.memo === undefined ? {} : { memo: patch.memo }),
  };
  if (Object.keys(set).length === 0) return await findUser(store, id);
  const row = await store.db.updateTable("users").set(set)
    .where("id", "=", id).returning(PUBLIC_USER_COLUMNS)
    .executeTakeFirst();
  return row === undefined ? undefined : toPublicUser(row);
}

/** Store a token hash for `userId`; ConflictError on a repeat, NotFoundError for no such user. */
export async function createToken(
  store: StoreDb,
  tokenHash: string,
  userId: number,
  expiresAt: number,
): Promise<void> {
  try {
    await store.db.insertInto("tokens")
      .values({ token_hash: tokenHash, user_id: userId, expires_at: expiresAt })
      .execute();
  } catch (error) {
    throw ownedRowError(error, "Token already exists");
  }
}

/** The user of a live (unrevoked, unexpired) token hash. */
export async function findTokenUser(
  store: StoreDb,
  tokenHash: string,
  now: number,
): Promise<number | undefined> {
  const { db, reused } = store;
  const build = () =>
    db.selectFrom("tokens").select("user_id")
      .where("token_hash", "=", tokenHash)
      .where("revoked", "=", 0)
      .where("expires_at", ">", now);
  const [row] = reused === undefined
    ? await build().execute()
    : await reused.rows(db, "findTokenUser", build, [tokenHash, 0, now]);
  return row === undefined ? undefined : Number(row.user_id);
}

/** Mark a token revoked. */
export async function revokeToken(
  store: StoreDb,
  tokenHash: string,
): Promise<void> {
  await store.db.updateTable("tokens").set({ revoked: 1 })
    .where("token_hash", "=", tokenHash).execute();
}

/** Delete expired tokens; how many went. */
export async function purgeExpiredTokens(
  store: StoreDb,
  now: number,
): Promise<number> {
  const result = await store.db.deleteFrom("tokens")
    .where("expires_at", "<", now).executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Record an uploaded file; ConflictError on a name taken, NotFoundError for no such owner. */
export async function recordAttachment(
  store: StoreDb,
  attachment: Attachment,
): Promise<void> {
  try {
    await store.db.insertInto("attachments")
      .values({
        name: attachment.name,
        owner_id: attachment.ownerId,
        mime: attachment.mime,
        size: attachment.size,
        created_at: attachment.createdAt,
      })
      .execute();
  } catch (error) {
    throw ownedRowError(error, "Attachment name already exists");
  }
}

/** The attachment called `name`. */
export async function findAttachment(
  store: StoreDb,
  name: string,
): Promise<Attachment | undefined> {
  const row = await store.db.selectFrom("attachments").selectAll()
    .where("name", "=", name).executeTakeFirst();
  if (row === undefined) return undefined;
  return {
    name: row.name,
    ownerId: Number(row.owner_id),
    mime: row.mime,
    size: Number(row.size),
    createdAt: Number(row.created_at),
  };
}

/** Bytes of all attachments `ownerId` uploaded. */
export async function attachmentBytes(
  store: StoreDb,
  ownerId: number,
): Promise<number> {
  const row = await store.db.selectFrom("attachments")
    .select((eb) => eb.fn.coalesce(eb.fn.sum<number>("size"), sql<number>`0`).as("total"))
    .where("owner_id", "=", ownerId)
    .executeTakeFirstOrThrow();
  return Number(row.total);
}

/**
 * The error to throw for a failed insert of a row a user owns: a unique
 * violation is a `ConflictError` with `conflict`, a foreign-key one means
 * the owner does not exist; anything else is `error` itself.
 */
function ownedRowError(error: unknown, conflict: string): unknown {
  if (isUniqueViolation(error)) return new ConflictError(conflict, { cause: error });
  if (isForeignKeyViolation(error)) return new NotFoundError("User not found", { cause: error });
  return error;
}
