/**
 * Shared helpers for the HTTP tests: an app over a fresh store with a temp
 * upload folder, request builders, and a snapshot of what the store holds.
 */

import { join } from "node:path";
import type { Hono } from "hono";
import { Auth } from "../lib/auth.ts";
import { createApp } from "../lib/http/app.ts";
import type { AppDeps } from "../lib/http/app.ts";
import type { HttpConfig, MembershipChange } from "../lib/http/route_deps.ts";
import type { Store } from "../lib/store.ts";
import { MemoryStore } from "../lib/store_memory.ts";
import { openKyselyStore } from "../lib/store_kysely.ts";

/** Where the repo's templates live. */
/** The first 16 bytes of a PNG file: enough for the content sniffer to call it image/png. */
export const PNG = new Uint8Array([
  0x89,
  0x50,
  0x4e,
  0x47,
  0x0d,
  0x0a,
  0x1a,
  0x0a,
  0,
  0,
  0,
  13,
  73,
  72,
  68,
  82,
]);

export const TEMPLATES_DIR = join(import.meta.dirname!, "..", "templates");

/** The store kinds the HTTP tests can run against. */
export type StoreKind = "memory" | "sqlite";

/** A store of `kind`; SQLite is `:memory:`. */
export async function makeStore(kind: StoreKind): Promise<Store> {
  if (kind === "memory") return new MemoryStore();
  return await openKyselyStore({ kind: "sqlite", path: ":memory:" });
}

/** Settings small enough for tests. */
export const TEST_CONFIG: HttpConfig = {
  bodyMaxBytes: 4096,
  uploadMaxBytes: 64 * 1024,
  groupsPerUser: 5,
  tokenTtlSeconds: 3600,
};

/** Options for {@linkcode makeTestApp}. */
export interface TestAppOptions {
  /** @default {"memory"} */
  store?: StoreKind | Store;
  config?: Partial<HttpConfig>;
  now?: () => number;
  extra?: Partial<AppDeps>;
}

/** An app over a fresh store; dispose to close the store and remove temp files. */
export interface TestApp extends AsyncDisposable {
  readonly app: Hono;
  readonly store: Store;
  readonly auth: Auth;
  readonly dir: string;
  readonly uploadsDir: string;
  readonly staticDir: string;
  readonly changes: MembershipChange[];
}

/** Build an app for one test. */
export async function makeTestApp(
  options: TestAppOptions = {},
): Promise<TestApp> {
  const store = typeof options.store === "object"
    ? options.store
    : await makeStore(options.store ?? "memory");
  const dir = await Deno.makeTempDir({ prefix: "lanchat_http_" });
  const staticDir = join(dir, "static");
  const uploadsDir = join(dir, "mnt");
  await Deno.mkdir(join(staticDir, "css"), { recursive: true });
  await Deno.writeTextFile(join(staticDir, "css", "app.css"), "body{}\n");
  const now = options.now ?? Date.now;
  const auth = new Auth({
    store,
    tokenTtlSeconds: options.config?.tokenTtlSeconds ??
      TEST_CONFIG.tokenTtlSeconds,
    iterations: 1000,
    now,
  });
  const changes: MembershipChange[] = [];
  const app = createApp({
    store,
    auth,
    config: { ...TEST_CONFIG, ...options.config },
    staticDir,
    templatesDir: TEMPLATES_DIR,
    uploadsDir,
    now,
    onMembershipChange: (change) => changes.push(change),
    ...options.extra,
  });
  return {
    app,
    store,
    auth,
    dir,
    uploadsDir,
    staticDir,
    changes,
    async [Symbol.asyncDispose]() {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A parsed reply: status, headers and JSON body (undefined if not JSON). */
export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  // deno-lint-ignore no-explicit-any
  readonly body: any;
}

/** Options for {@linkcode call}. */
export interface CallOptions {
  /** Body fields; sent as JSON unless `form` is set. */
  fields?: Record<string, unknown>;
  /** Send the fields form-urlencoded. */
  form?: boolean;
  /** Sent as `Authorization: Bearer`. */
  token?: string;
  method?: string;
  headers?: Record<string, string>;
  /** A raw body (overrides `fields`). */
  body?: BodyInit;
}

/** Call `path` on the app and parse the reply. */
export async function call(
  app: Hono,
  path: string,
  options: CallOptions = {},
): Promise<Reply> {
  const headers = new Headers(options.headers);
  if (options.token !== undefined) {
    headers.set("authorization", `Bearer ${options.token}`);
  }
  let body: BodyInit | undefined = options.body;
  if (body === undefined && options.fields !== undefined) {
    if (options.form) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(options.fields)) {
        params.append(k, String(v));
      }
      body = params;
    } else {
      headers.set("content-type", "application/json");
      body = JSON.stringify(options.fields);
    }
  }
  const res = await app.fetch(
    new Request(`http://127.0.0.1${path}`, {
      method: options.method ?? "POST",
      headers,
      ...(body === undefined ? {} : { body }),
    }),
  );
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed ?? text };
}

/** A registered user's id and token. */
export interface Registered {
  readonly id: number;
  readonly token: string;
}

/** Register `mobile` with a default password and return its id and token. */
export async function register(
  app: Hono,
  mobile: string,
  extra: Record<string, unknown> = {},
): Promise<Registered> {
  const r = await call(app, "/user/register", {
    fields: { mobile, passwd: "secret-pass", nickname: `n${mobile}`, ...extra },
  });
  if (r.status !== 200 || r.body.code !== 0) {
    throw new Error(`register ${mobile} failed: ${JSON.stringify(r.body)}`);
  }
  return { id: r.body.data.id, token: r.body.data.token };
}

/** What the store holds, for "nothing changed" assertions. */
export async function snapshot(store: Store, maxId = 30): Promise<string> {
  const users: unknown[] = [];
  const friends: unknown[] = [];
  const groups: unknown[] = [];
  for (let id = 1; id <= maxId; id++) {
    const user = await store.findUser(id);
    if (user !== undefined) {
      users.push(user);
      friends.push((await store.listFriends(id)).map((f) => f.id));
      groups.push((await store.listGroups(id)).map((g) => g.id));
    }
    const group = await store.findGroup(id);
    if (group !== undefined) groups.push(group, await store.listMembers(id));
  }
  return JSON.stringify({ users, friends, groups });
}
