/**
 * Shared pieces of the Kysely store: the database handle type, row
 * mappers and the unique-violation test for both engines.
 *
 * @module
 */

import type { Kysely, Selectable } from "kysely";
import type {
  ChatGroupsTable,
  Database,
  MessagesTable,
  SqlDialectKind,
  UsersTable,
} from "./migrations.ts";
import type { Group, PublicUser, Sex, StoredMessage } from "./store.ts";
import type { ReusedQueries } from "./_reused_query.ts";

/** A Kysely handle on the store's schema, plus which engine it talks to. */
export interface StoreDb {
  readonly db: Kysely<Database>;
  readonly dialect: SqlDialectKind;
  /** Compiled hot queries (see `_reused_query.ts`); without it they compile each time. */
  readonly reused?: ReusedQueries;
}

/** The `users` columns a {@linkcode PublicUser} is built from. */
export const PUBLIC_USER_COLUMNS = [
  "id",
  "mobile",
  "nickname",
  "avatar",
  "sex",
  "memo",
  "created_at",
] as const;

/** Build a {@linkcode PublicUser} from a row (never the password hash). */
export function toPublicUser(
  row: Pick<Selectable<UsersTable>, typeof PUBLIC_USER_COLUMNS[number]>,
): PublicUser {
  return {
    id: Number(row.id),
    mobile: row.mobile,
    nickname: row.nickname,
    avatar: row.avatar,
    sex: toSex(row.sex),
    memo: row.memo,
    createdAt: Number(row.created_at),
  };
}

function toSex(value: string): Sex {
  return value === "M" || value === "W" ? value : "U";
}

/** Build a {@linkcode Group} from a `chat_groups` row. */
export function toGroup(row: Selectable<ChatGroupsTable>): Group {
  return {
    id: Number(row.id),
    name: row.name,
    ownerId: Number(row.owner_id),
    icon: row.icon,
    cate: Number(row.cate),
    memo: row.memo,
    createdAt: Number(row.created_at),
  };
}

/** Build a {@linkcode StoredMessage} from a `messages` row. */
export function toMessage(row: Selectable<MessagesTable>): StoredMessage {
  return {
    id: Number(row.id),
    conv: row.conv,
    seq: Number(row.seq),
    userid: Number(row.userid),
    cmd: Number(row.cmd),
    dstid: Number(row.dstid),
    media: Number(row.media),
    content: row.content,
    pic: row.pic,
    url: row.url,
    memo: row.memo,
    amount: Number(row.amount),
    cid: row.cid,
    ts: Number(row.ts),
  };
}

/**
 * Whether `error` is a unique-constraint violation: Postgres SQLSTATE 23505
 * or SQLite's "UNIQUE constraint failed" (also for a primary key).
 */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  if ((error as { code?: unknown }).code === "23505") return true;
  return error instanceof Error &&
    /UNIQUE constraint failed/.test(error.message);
}

/**
 * Whether `error` is a foreign-key violation: Postgres SQLSTATE 23503 or
 * SQLite's "FOREIGN KEY constraint failed".
 */
export function isForeignKeyViolation(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  if ((error as { code?: unknown }).code === "23503") return true;
  return error instanceof Error &&
    /FOREIGN KEY constraint failed/.test(error.message);
}
