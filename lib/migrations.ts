/**
 * The store's schema: the row types Kysely queries see, and the migrations
 * that create them, in code. One provider serves SQLite and PostgreSQL; only
 * the id and integer column types differ.
 *
 * Migrations are append-only: never edit a shipped one, add the next.
 *
 * @module
 */

import type { ColumnType, Generated, Kysely } from "kysely";
import type { Migration, MigrationProvider } from "kysely/migration";

/** Which SQL engine a migration runs on. */
export type SqlDialectKind = "sqlite" | "postgres";

/** `users`: one row per account. */
export interface UsersTable {
  id: Generated<number>;
  mobile: string;
  password_hash: string;
  nickname: string;
  avatar: string;
  sex: string;
  memo: string;
  created_at: number;
}

/** `tokens`: login token hashes (never the tokens). */
export interface TokensTable {
  token_hash: string;
  user_id: number;
  expires_at: number;
  /** 0 or 1. */
  revoked: ColumnType<number, number | undefined, number>;
}

/** `contacts`: one row per direction of a friendship. */
export interface ContactsTable {
  owner_id: number;
  dst_id: number;
  created_at: number;
}

/** `chat_groups`: groups ("communities"); `group` is a reserved word. */
export interface ChatGroupsTable {
  id: Generated<number>;
  name: string;
  owner_id: number;
  icon: string;
  cate: number;
  memo: string;
  created_at: number;
}

/** `memberships`: one row per group member. */
export interface MembershipsTable {
  group_id: number;
  user_id: number;
  created_at: number;
}

/** `attachments`: upload metadata. */
export interface AttachmentsTable {
  name: string;
  owner_id: number;
  mime: string;
  size: number;
  created_at: number;
}

/**
 * `conversations`: the last seq of each conversation. `user_lo`/`user_hi`
 * name the pair of a 1:1 conversation, `group_id` the group of a group one.
 */
export interface ConversationsTable {
  conv: string;
  last_seq: number;
  user_lo: number | null;
  user_hi: number | null;
  group_id: number | null;
}

/** `messages`: every stored chat message. */
export interface MessagesTable {
  id: Generated<number>;
  conv: string;
  seq: number;
  userid: number;
  cmd: number;
  dstid: number;
  media: number;
  content: string;
  pic: string;
  url: string;
  memo: string;
  amount: number;
  cid: string;
  ts: number;
}

/** All tables, as Kysely's `Database` type parameter. */
export interface Database {
  users: UsersTable;
  tokens: TokensTable;
  contacts: ContactsTable;
  chat_groups: ChatGroupsTable;
  memberships: MembershipsTable;
  attachments: AttachmentsTable;
  conversations: ConversationsTable;
  messages: MessagesTable;
}

/** The migrations for `dialect`, keyed by name (applied in name order). */
export function migrationProvider(dialect: SqlDialectKind): MigrationProvider {
  const migrations: Record<string, Migration> = {
    "0001_initial": { up: (db) => createInitialSchema(db, dialect) },
  };
  return {
    getMigrations(): Promise<Record<string, Migration>> {
      return Promise.resolve(migrations);
    },
  };
}

// deno-lint-ignore no-explicit-any
async function createInitialSchema(db: Kysely<any>, dialect: SqlDialectKind) {
  const pg = dialect === "postgres";
  // Ids, times and sizes outgrow 32 bits on Postgres; SQLite integers are 64-bit.
  const big = pg ? "bigint" : "integer";
  const idType = pg ? "bigserial" : "integer";
  const amountType = pg ? "double precision" : "real";

  await db.schema.createTable("users")
    .addColumn("id", idType, (c) => pg ? c.primaryKey() : c.primaryKey().autoIncrement())
    .addColumn("mobile", "text", (c) => c.notNull().unique())
    .addColumn("password_hash", "text", (c) => c.notNull())
    .addColumn("nickname", "text", (c) => c.notNull())
    .addColumn("avatar", "text", (c) => c.notNull())
    .addColumn("sex", "text", (c) => c.notNull())
    .addColumn("memo", "text", (c) => c.notNull())
    .addColumn("created_at", big, (c) => c.notNull())
    .execute();

  await db.schema.createTable("tokens")
    .addColumn("token_hash", "text", (c) => c.primaryKey())
    .addColumn(
      "user_id",
      big,
      (c) => c.notNull().references("users.id").onDelete("cascade"),
    )
    .addColumn("expires_at", big, (c) => c.notNull())
    .addColumn("revoked", "integer", (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.createIndex("tokens_user_id").on("tokens")
    .column("user_id").execute();
  await db.schema.createIndex("tokens_expires_at").on("tokens")
    .column("expires_at").execute();

  await db.schema.createTable("contacts")
    .addColumn(
      "owner_id",
      big,
      (c) => c.notNull().references("users.id").onDelete("cascade"),
    )
    .addColumn(
      "dst_id",
      big,
      (c) => c.notNull().references("users.id").onDelete("cascade"),
    )
    .addColumn("created_at", big, (c) => c.notNull())
    .addUniqueConstraint("contacts_owner_dst", ["owner_id", "dst_id"])
    .execute();
  await db.schema.createIndex("contacts_dst_id").on("contacts")
    .column("dst_id").execute();

  await db.schema.createTable("chat_groups")
    .addColumn("id", idType, (c) => pg ? c.primaryKey() : c.primaryKey().autoIncrement())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("owner_id", big, (c) => c.notNull().references("users.id"))
    .addColumn("icon", "text", (c) => c.notNull())
    .addColumn("cate", "integer", (c) => c.notNull())
    .addColumn("memo", "text", (c) => c.notNull())
    .addColumn("created_at", big, (c) => c.notNull())
    .execute();
  await db.schema.createIndex("chat_groups_owner_id").on("chat_groups")
    .column("owner_id").execute();

  await db.schema.createTable("memberships")
    .addColumn(
      "group_id",
      big,
      (c) => c.notNull().references("chat_groups.id").onDelete("cascade"),
    )
    .addColumn(
      "user_id",
      big,
      (c) => c.notNull().references("users.id").onDelete("cascade"),
    )
    .addColumn("created_at", big, (c) => c.notNull())
    .addUniqueConstraint("memberships_group_user", ["group_id", "user_id"])
    .execute();
  await db.schema.createIndex("memberships_user_id").on("memberships")
    .column("user_id").execute();

  await db.schema.createTable("attachments")
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("owner_id", big, (c) => c.notNull().references("users.id"))
    .addColumn("mime", "text", (c) => c.notNull())
    .addColumn("size", big, (c) => c.notNull())
    .addColumn("created_at", big, (c) => c.notNull())
    .execute();
  await db.schema.createIndex("attachments_owner_id").on("attachments")
    .column("owner_id").execute();

  await db.schema.createTable("conversations")
    .addColumn("conv", "text", (c) => c.primaryKey())
    .addColumn("last_seq", big, (c) => c.notNull())
    .addColumn("user_lo", big)
    .addColumn("user_hi", big)
    .addColumn("group_id", big)
    .execute();
  for (const column of ["user_lo", "user_hi", "group_id"]) {
    await db.schema.createIndex(`conversations_${column}`)
      .on("conversations").column(column).execute();
  }

  await db.schema.createTable("messages")
    .addColumn("id", idType, (c) => pg ? c.primaryKey() : c.primaryKey().autoIncrement())
    .addColumn("conv", "text", (c) => c.notNull())
    .addColumn("seq", big, (c) => c.notNull())
    .addColumn("userid", big, (c) => c.notNull())
    .addColumn("cmd", "integer", (c) => c.notNull())
    .addColumn("dstid", big, (c) => c.notNull())
    .addColumn("media", "integer", (c) => c.notNull())
    .addColumn("content", "text", (c) => c.notNull())
    .addColumn("pic", "text", (c) => c.notNull())
    .addColumn("url", "text", (c) => c.notNull())
    .addColumn("memo", "text", (c) => c.notNull())
    .addColumn("amount", amountType, (c) => c.notNull())
    .addColumn("cid", "text", (c) => c.notNull())
    .addColumn("ts", big, (c) => c.notNull())
    .addUniqueConstraint("messages_conv_seq", ["conv", "seq"])
    .addUniqueConstraint("messages_userid_cid", ["userid", "cid"])
    .execute();
}
