/**
 * The SQL store: {@linkcode Store} on Kysely, over SQLite (`node:sqlite`,
 * the embedded default) or PostgreSQL (`pg`, for a cluster). Opening runs
 * the migrations; two nodes opening one database at once is safe.
 *
 * Users, tokens and attachments live in `store_kysely_accounts.ts`,
 * friendships and groups in `store_kysely_social.ts`, messages in
 * `store_kysely_messages.ts`.
 *
 * @module
 */

import { dirname } from "node:path";
import { getLogger } from "@logtape/logtape";
import { type Dialect, Kysely, sql } from "kysely";
import { Migrator } from "kysely/migration";
import type { DbSetting } from "./config.ts";
import { type Database, migrationProvider, type SqlDialectKind } from "./migrations.ts";
import { sqliteDialect, type SqliteReads } from "./_sqlite_dialect.ts";
import { parseSchemaName, postgresDialect } from "./_pg_dialect.ts";
import type { DeadlinePool } from "./_pg_deadline.ts";
import type {
  AppendOutcome,
  AppendRequest,
  AppendResult,
  Attachment,
  Group,
  NewGroup,
  NewMessage,
  NewUser,
  ProfilePatch,
  PublicUser,
  Store,
  StoredMessage,
} from "./store.ts";
import type { StoreDb } from "./_store_kysely_rows.ts";
import * as accounts from "./store_kysely_accounts.ts";
import * as social from "./store_kysely_social.ts";
import * as messages from "./store_kysely_messages.ts";
import { GroupCommit } from "./store_batch.ts";
import { diskFullError, isDiskFull } from "./disk_full.ts";
import { DiskFullLog } from "./disk_full_log.ts";
import { appendMessages } from "./_store_kysely_batch.ts";
import { ReusedQueries } from "./_reused_query.ts";
import { AppendWorker, AppendWorkerStopped, SyncFailedError } from "./store_append_worker.ts";

const log = getLogger(["chat", "store"]);

/** Options for {@linkcode openKyselyStore}. */
export interface KyselyStoreOptions {
  /** Postgres schema for every table (tests isolate in their own). @default {"public"} */
  schema?: string;
  /** Postgres connections in the pool. @default {10} */
  poolSize?: number;
  /**
   * Postgres: a query (after migrations) that has not answered after this
   * many ms loses its connection and fails as retryable. @default {15000}
   */
  queryDeadlineMs?: number;
  /** How long SQLite waits for another connection's write lock, ms. @default {5000} */
  busyTimeoutMs?: number;
  /**
   * SQLite: an append (so its ack) resolves only once it is synced to disk,
   * and other writes use `synchronous = FULL`; without it a commit is on
   * disk within about 100 ms (docs/store.md). PostgreSQL commits are
   * durable anyway. @default {false}
   */
  durableAcks?: boolean;
  /**
   * SQLite file only: the module of the append worker
   * (`lib/_sqlite_append_worker.ts`) to write message batches on another
   * thread. Without it, or when it cannot start, appends run on the main
   * thread. @default {none}
   */
  appendWorker?: URL;
  /**
   * With `appendWorker`: write a small batch on the main thread when the
   * worker is idle and the load light (`lib/store_append_worker.ts`). @default {true}
   */
  appendInline?: boolean;
  /**
   * Where a full disk met by an append is logged; the node's one, shared
   * with the HTTP app, so the line comes once per 10 s for both. @default {a new one}
   */
  diskFullLog?: DiskFullLog;
}

/** Optional parts of a {@linkcode KyselyStore}. */
export interface KyselyStoreParts {
  /** Writes message batches on another thread; the store closes it. @default {none} */
  readonly worker?: AppendWorker;
  /** Logs a full disk met by an append. @default {a new one} */
  readonly diskFullLog?: DiskFullLog;
}

/**
 * Open the store `setting` names, run pending migrations and return it.
 * For SQLite the parent folder of the file is created. Needs read and
 * write permission on the file's folder (SQLite) or net to the server
 * (Postgres).
 */
export async function openKyselyStore(
  setting: DbSetting,
  options: KyselyStoreOptions = {},
): Promise<KyselyStore> {
  let dialect: Dialect;
  let schema: string | undefined;
  let reads: SqliteReads | undefined;
  let pool: DeadlinePool | undefined;
  if (setting.kind === "sqlite") {
    if (setting.path !== ":memory:" && !setting.path.startsWith("file:")) {
      await Deno.mkdir(dirname(setting.path), { recursive: true });
    }
    const dialectOptions = {
      ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
      durable: options.durableAcks ?? false,
    };
    const sqlite = sqliteDialect(setting.path, dialectOptions);
    dialect = sqlite;
    reads = sqlite;
  } else {
    schema = parseSchemaName(options.schema ?? "public");
    ({ dialect, pool } = postgresDialect(setting.url, {
      schema,
      poolSize: options.poolSize ?? 10,
      ...(options.queryDeadlineMs === undefined
        ? {}
        : { queryDeadlineMs: options.queryDeadlineMs }),
    }));
  }
  const db = new Kysely<Database>({ dialect });
  try {
    await migrate(db, { dialect: setting.kind, schema });
  } catch (error) {
    await db.destroy();
    throw error;
  }
  pool?.arm();
  let worker: AppendWorker | undefined;
  const file = setting.kind === "sqlite" && setting.path !== ":memory:" &&
    !setting.path.startsWith("file:");
  if (file && options.appendWorker !== undefined) {
    try {
      worker = await AppendWorker.start(options.appendWorker, setting.path, {
        ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
        inlineWhenIdle: options.appendInline ?? true,
        durable: options.durableAcks ?? false,
        onWarning: (message) => log.warn("{message}", { message }),
      });
      log.info("Message appends run on a worker thread");
    } catch (error) {
      log.warn("Message appends run on the main thread; the append worker failed: {error}", {
        error,
      });
    }
  }
  return new KyselyStore({ db, dialect: setting.kind, reused: new ReusedQueries(reads) }, {
    ...(worker === undefined ? {} : { worker }),
    ...(options.diskFullLog === undefined ? {} : { diskFullLog: options.diskFullLog }),
  });
}

async function migrate(
  db: Kysely<Database>,
  options: { dialect: SqlDialectKind; schema: string | undefined },
): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: migrationProvider(options.dialect),
    ...(options.schema === undefined ? {} : { migrationTableSchema: options.schema }),
  });
  const { error, results } = await migrator.migrateToLatest();
  for (const r of results ?? []) {
    log.info("Migration {name} {status}", {
      name: r.migrationName,
      status: r.status,
    });
  }
  if (error !== undefined) throw error;
}

/** {@linkcode Store} over a Kysely database whose schema is migrated. */
export class KyselyStore implements Store {
  #s: StoreDb;
  #closing: Promise<void> | undefined;
  /** Appends made while a batch is being written go in the next one (group commit). */
  #commits: GroupCommit;
  #diskFullLog: DiskFullLog;
  /** Writes batches on another thread (SQLite file), while it runs. */
  #worker: AppendWorker | undefined;

  /**
   * Wrap an open, migrated database; {@linkcode openKyselyStore} is the usual
   * way. With a `worker`, message batches go to it; the store closes it.
   */
  constructor(store: StoreDb, parts: KyselyStoreParts = {}) {
    this.#s = { ...store, reused: store.reused ?? new ReusedQueries() };
    const worker = parts.worker;
    this.#worker = worker;
    this.#diskFullLog = parts.diskFullLog ?? new DiskFullLog();
    // The worker writes batches in arrival order, so it may hold the next one.
    this.#commits = new GroupCommit((batch) => this.#writeBatch(batch), {
      maxInFlight: worker === undefined ? 1 : 2,
    });
  }

  async #writeBatch(batch: readonly AppendRequest[]): Promise<AppendOutcome[]> {
    let outcomes: AppendOutcome[];
    try {
      outcomes = await this.#writeBatchOn(batch);
    } catch (error) {
      throw this.#diskFull(error) ?? error;
    }
    // Written item by item (after an item's error), each may have met the full disk too.
    // The common batch (all stored) is returned as it is: this runs per batch.
    if (outcomes.every((o) => o.ok)) return outcomes;
    return outcomes.map((o) => {
      const full = o.ok ? undefined : this.#diskFull(o.error);
      return full === undefined ? o : { ok: false, error: full };
    });
  }

  /** The client's answer when `error` is a full disk (logged once per 10 s), else undefined. */
  #diskFull(error: unknown): Error | undefined {
    // A failed sync refuses appends until a restart: freeing space would not lift it.
    if (!isDiskFull(error) || error instanceof SyncFailedError) return undefined;
    this.#diskFullLog.report(error, "message append");
    return diskFullError(error);
  }

  async #writeBatchOn(batch: readonly AppendRequest[]): Promise<AppendOutcome[]> {
    const worker = this.#worker;
    if (worker === undefined || !worker.running) return appendMessages(this.#s, batch);
    try {
      return await worker.write(batch);
    } catch (error) {
      if (!(error instanceof AppendWorkerStopped) || this.#closing !== undefined) throw error;
      // The batch may or may not be stored: the rerun's cid dedup tells which.
      log.error("Message appends move to the main thread: {error}", { error });
      this.#worker = undefined;
      // Its main-thread connection (and that connection's WAL syncs) go with it.
      worker.close().catch((closeError) => {
        log.warn("The stopped append worker did not close cleanly: {error}", {
          error: closeError,
        });
      });
      return appendMessages(this.#s, batch);
    }
  }

  /** Which SQL engine this store talks to. */
  get dialect(): SqlDialectKind {
    return this.#s.dialect;
  }

  createUser(user: NewUser, now: number): Promise<PublicUser> {
    return accounts.createUser(this.#s, user, now);
  }

  findUser(id: number): Promise<PublicUser | undefined> {
    return accounts.findUser(this.#s, id);
  }

  findCredentials(mobile: string): Promise<{ user: PublicUser; passwordHash: string } | undefined> {
    return accounts.findCredentials(this.#s, mobile);
  }

  updateProfile(id: number, patch: ProfilePatch): Promise<PublicUser | undefined> {
    return accounts.updateProfile(this.#s, id, patch);
  }

  createToken(tokenHash: string, userId: number, expiresAt: number): Promise<void> {
    return accounts.createToken(this.#s, tokenHash, userId, expiresAt);
  }

  findTokenUser(tokenHash: string, now: number): Promise<number | undefined> {
    return accounts.findTokenUser(this.#s, tokenHash, now);
  }

  revokeToken(tokenHash: string): Promise<void> {
    return accounts.revokeToken(this.#s, tokenHash);
  }

  purgeExpiredTokens(now: number): Promise<number> {
    return accounts.purgeExpiredTokens(this.#s, now);
  }

  addFriendship(a: number, b: number, now: number): Promise<"added" | "exists"> {
    return social.addFriendship(this.#s, { a, b }, now);
  }

  listFriends(userId: number): Promise<PublicUser[]> {
    return social.listFriends(this.#s, userId);
  }

  areFriends(a: number, b: number): Promise<boolean> {
    return social.areFriends(this.#s, { a, b });
  }

  createGroup(
    group: NewGroup,
    options: { now: number; maxPerOwner: number },
  ): Promise<Group> {
    return social.createGroup(this.#s, group, options);
  }

  findGroup(id: number): Promise<Group | undefined> {
    return social.findGroup(this.#s, id);
  }

  joinGroup(
    userId: number,
    groupId: number,
    now: number,
  ): Promise<"joined" | "exists"> {
    return social.joinGroup(this.#s, { userId, groupId }, now);
  }

  listGroups(userId: number): Promise<Group[]> {
    return social.listGroups(this.#s, userId);
  }

  listMembers(groupId: number): Promise<number[]> {
    return social.listMembers(this.#s, groupId);
  }

  isMember(userId: number, groupId: number): Promise<boolean> {
    return social.isMember(this.#s, { userId, groupId });
  }

  recordAttachment(attachment: Attachment): Promise<void> {
    return accounts.recordAttachment(this.#s, attachment);
  }

  findAttachment(name: string): Promise<Attachment | undefined> {
    return accounts.findAttachment(this.#s, name);
  }

  attachmentBytes(ownerId: number): Promise<number> {
    return accounts.attachmentBytes(this.#s, ownerId);
  }

  appendMessage(message: NewMessage, now: number): Promise<AppendResult> {
    return this.#commits.append(message, now);
  }

  appendMessages(batch: readonly AppendRequest[]): Promise<AppendOutcome[]> {
    return this.#writeBatch(batch);
  }

  listMessages(
    conv: string,
    options: { afterSeq?: number; beforeSeq?: number; limit: number },
  ): Promise<StoredMessage[]> {
    return messages.listMessages(this.#s, conv, options);
  }

  lastSeqs(userId: number): Promise<Map<string, number>> {
    return messages.lastSeqs(this.#s, userId);
  }

  recentHeads(sinceTs: number, limit: number): Promise<{ conv: string; seq: number }[]> {
    return messages.recentHeads(this.#s, sinceTs, limit);
  }

  async ping(): Promise<void> {
    // Reachable but refusing every message is not ready: a proxy should send users elsewhere.
    const refusing = this.#worker?.refusing;
    if (refusing !== undefined) throw refusing;
    await sql`select 1`.execute(this.#s.db);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#worker?.close();
      await this.#s.db.destroy();
    })();
    return this.#closing;
  }
}
