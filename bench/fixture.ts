/**
 * The bench fixture: N users with login tokens, pairs of friends and groups
 * of size S, written straight into a fresh store with batched Kysely inserts
 * (one transaction per table), so 10,000 users take seconds.
 *
 * Layout, by user index i (0-based, in id order): users 2k and 2k+1 are
 * friends; users [g·S, (g+1)·S) form group g (the first is its owner).
 * Every fixture user has the password `bench-password`, hashed ONCE with a
 * low PBKDF2 iteration count (1,000, see {@linkcode FIXTURE_ITERATIONS}) and
 * shared by all of them — bench data only, never a real account.
 *
 * CLI (the `bench:fixture` task):
 *
 * ```
 * deno task bench:fixture --db /tmp/x/chat.db --users 10000 --group-size 100 --out /tmp/x/tokens.json
 * ```
 *
 * writes `[{id,token}]` to `--out` and `[{id,members}]` to `<out>.groups.json`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type Dialect, Kysely } from "kysely";
import { Auth, tokenHash } from "../lib/auth.ts";
import type { DbSetting } from "../lib/config.ts";
import type { Database } from "../lib/migrations.ts";
import { openKyselyStore } from "../lib/store_kysely.ts";
import { sqliteDialect } from "../lib/_sqlite_dialect.ts";
import { postgresDialect } from "../lib/_pg_dialect.ts";

/** PBKDF2 iterations of the shared fixture password (the server default is 600,000). */
export const FIXTURE_ITERATIONS = 1000;
/** The password of every fixture user. */
export const FIXTURE_PASSWORD = "bench-password";

/** A fixture user and a valid login token. */
export interface FixtureUser {
  readonly id: number;
  readonly token: string;
}

/** A fixture group and its member ids (owner first). */
export interface FixtureGroup {
  readonly id: number;
  readonly members: readonly number[];
}

/** What {@linkcode createFixture} made. */
export interface Fixture {
  readonly users: FixtureUser[];
  readonly groups: FixtureGroup[];
  /** Friendship pairs made (each stored both ways). */
  readonly friendships: number;
}

/** Options of {@linkcode createFixture}. */
export interface FixtureOptions {
  /** Users to create. */
  readonly users: number;
  /** Members per group; 0 makes no groups. @default {100} */
  readonly groupSize?: number;
  /** Token lifetime, seconds. @default {604800} */
  readonly tokenTtlSeconds?: number;
  /** Clock, epoch ms. @default {Date.now} */
  readonly now?: () => number;
}

const BATCH = 1000;

/** Split `rows` in batches of {@linkcode BATCH} (SQLite's bound-parameter limit). */
function batches<T>(rows: T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < rows.length; i += BATCH) out.push(rows.slice(i, i + BATCH));
  return out;
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
}

/**
 * Migrate the store `setting` names, then fill it. Refuses a store that
 * already has users (ids are taken in insertion order).
 */
export async function createFixture(
  setting: DbSetting,
  options: FixtureOptions,
): Promise<Fixture> {
  const now = (options.now ?? Date.now)();
  const groupSize = options.groupSize ?? 100;
  const ttlMs = (options.tokenTtlSeconds ?? 7 * 86400) * 1000;
  // Migrations run here; the store's Auth hashes the one shared password.
  const store = await openKyselyStore(setting);
  const auth = new Auth({ store, tokenTtlSeconds: 1, iterations: FIXTURE_ITERATIONS });
  const passwordHash = await auth.hashPassword(FIXTURE_PASSWORD);
  await store.close();

  const dialect: Dialect = setting.kind === "sqlite"
    ? sqliteDialect(setting.path)
    : postgresDialect(setting.url, { schema: "public", poolSize: 2 }).dialect;
  const db = new Kysely<Database>({ dialect });
  try {
    const existing = await db.selectFrom("users").select((eb) => eb.fn.countAll().as("n"))
      .executeTakeFirstOrThrow();
    if (Number(existing.n) > 0) {
      throw new RangeError("The fixture needs an empty store: users already exist");
    }
    const mobile = (i: number) => `1${String(i).padStart(10, "0")}`;
    const ids = await db.transaction().execute(async (trx) => {
      const out: number[] = [];
      const all = Array.from({ length: options.users }, (_, i) => i);
      for (const chunk of batches(all)) {
        const rows = await trx.insertInto("users").values(chunk.map((i) => ({
          mobile: mobile(i),
          password_hash: passwordHash,
          nickname: `bench${i}`,
          avatar: "",
          sex: "U",
          memo: "",
          created_at: now,
        }))).returning(["id", "mobile"]).execute();
        const byMobile = new Map(rows.map((r) => [r.mobile, Number(r.id)]));
        for (const i of chunk) out.push(byMobile.get(mobile(i)) ?? 0);
      }
      return out;
    });
    const users: FixtureUser[] = [];
    const tokenRows: {
      token_hash: string;
      user_id: number;
      expires_at: number;
      revoked: number;
    }[] = [];
    for (const id of ids) {
      const token = randomToken();
      users.push({ id, token });
      tokenRows.push({
        token_hash: tokenHash(token),
        user_id: id,
        expires_at: now + ttlMs,
        revoked: 0,
      });
    }
    const contactRows: { owner_id: number; dst_id: number; created_at: number }[] = [];
    for (let i = 0; i + 1 < ids.length; i += 2) {
      const a = ids[i] ?? 0;
      const b = ids[i + 1] ?? 0;
      contactRows.push({ owner_id: a, dst_id: b, created_at: now });
      contactRows.push({ owner_id: b, dst_id: a, created_at: now });
    }
    const groups = await db.transaction().execute(async (trx) => {
      for (const chunk of batches(tokenRows)) {
        await trx.insertInto("tokens").values(chunk).execute();
      }
      for (const chunk of batches(contactRows)) {
        await trx.insertInto("contacts").values(chunk).execute();
      }
      const made: FixtureGroup[] = [];
      if (groupSize <= 0) return made;
      for (let g = 0; (g + 1) * groupSize <= ids.length; g++) {
        const members = ids.slice(g * groupSize, (g + 1) * groupSize);
        const row = await trx.insertInto("chat_groups").values({
          name: `bench group ${g}`,
          owner_id: members[0] ?? 0,
          icon: "",
          cate: 0,
          memo: "",
          created_at: now,
        }).returning("id").executeTakeFirstOrThrow();
        const id = Number(row.id);
        await trx.insertInto("memberships").values(
          members.map((user_id) => ({ group_id: id, user_id, created_at: now })),
        ).execute();
        made.push({ id, members });
      }
      return made;
    });
    return { users, groups, friendships: contactRows.length / 2 };
  } finally {
    await db.destroy();
  }
}

/** Parse `--db` as a SQLite file path (or `sqlite:<path>`) or a `postgres://` URL. */
export function parseDbArg(raw: string): DbSetting {
  if (/^postgres(ql)?:\/\//.test(raw)) return { kind: "postgres", url: raw };
  return { kind: "sqlite", path: raw.startsWith("sqlite:") ? raw.slice(7) : raw };
}

/** Write the fixture's tokens to `out` and its groups to `<out>.groups.json`. */
export async function writeFixtureFiles(fixture: Fixture, out: string): Promise<void> {
  await Deno.writeTextFile(out, JSON.stringify(fixture.users));
  await Deno.writeTextFile(`${out}.groups.json`, JSON.stringify(fixture.groups));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      db: { type: "string" },
      users: { type: "string", default: "10000" },
      "group-size": { type: "string", default: "100" },
      out: { type: "string" },
    },
  });
  if (values.db === undefined || values.out === undefined) {
    throw new TypeError("Usage: fixture.ts --db <file|postgres url> --out <tokens.json>");
  }
  const started = performance.now();
  const fixture = await createFixture(parseDbArg(values.db), {
    users: Number(values.users),
    groupSize: Number(values["group-size"]),
  });
  await writeFixtureFiles(fixture, values.out);
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  const line = `${fixture.users.length} users, ${fixture.friendships} friendships, ` +
    `${fixture.groups.length} groups in ${seconds} s -> ${values.out}\n`;
  await Deno.stdout.write(new TextEncoder().encode(line));
}

if (import.meta.main) await main();
