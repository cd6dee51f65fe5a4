/**
 * Shared helpers for the realtime tests: a manual clock, a recording fake
 * Connection, and a real chat server on 127.0.0.1 port 0 over a real store
 * (SQLite `:memory:`, or Postgres in its own schema) with real WebSocket
 * clients.
 */

import { serve } from "../lib/ws/serve.ts";
import pg from "pg";
import { Auth } from "../lib/auth.ts";
import type { Bus } from "../lib/bus.ts";
import { LocalBus } from "../lib/bus_local.ts";
import { ChatService } from "../lib/chat_service.ts";
import { chatRoutes } from "../lib/http/chat_route.ts";
import type { Connection, SessionOptions, Timers } from "../lib/session.ts";
import type { Store } from "../lib/store.ts";
import { pgConnectionConfig } from "../lib/_pg_dialect.ts";
import { openKyselyStore } from "../lib/store_kysely.ts";

/** Postgres URL for the delivery tests, when set (read lazily: core tests need no env access). */
export function pgUrl(): string | undefined {
  return Deno.env.get("CHAT_TEST_PG_URL");
}

/** Timers that fire only when the test advances them. */
export class ManualTimers implements Timers {
  #now = 1_000_000;
  #next = 1;
  #due = new Map<number, { at: number; fn: () => void }>();

  /** Current fake time. */
  now(): number {
    return this.#now;
  }

  /** Schedule `fn` at now + `ms`. */
  setTimeout(fn: () => void, ms: number): number {
    const id = this.#next++;
    this.#due.set(id, { at: this.#now + ms, fn });
    return id;
  }

  /** Cancel a timer. */
  clearTimeout(id: unknown): void {
    this.#due.delete(id as number);
  }

  /** Timers not yet fired or cleared. */
  get pending(): number {
    return this.#due.size;
  }

  /** Move time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#due) {
        if (entry[1].at <= end && (!first || entry[1].at < first[1].at)) {
          first = entry;
        }
      }
      if (first === undefined) break;
      this.#due.delete(first[0]);
      this.#now = first[1].at;
      first[1].fn();
    }
    this.#now = end;
  }
}

/** A Connection that records what is sent; `bufferedAmount` is set by the test. */
export class FakeConnection implements Connection {
  /** Every text frame sent, in order. */
  readonly sent: string[] = [];
  /** The close call, once made. */
  closed: { code: number; reason: string } | undefined;
  /** Pretend bytes are stuck in the socket. */
  bufferedAmount = 0;

  /** Record a frame; throws after close like a real socket. */
  send(text: string): void {
    if (this.closed) throw new Error("Socket is closed");
    this.sent.push(text);
  }

  /** Record the close. */
  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
  }

  /** The sent frames, parsed. */
  frames(): Record<string, unknown>[] {
    return this.sent.map((s) => JSON.parse(s));
  }
}

/** A real WebSocket client that keeps every frame it gets. */
export class TestSocket {
  readonly ws: WebSocket;
  readonly frames: Record<string, unknown>[] = [];
  /** Arrival time (performance.now()) of each frame in `frames`. */
  readonly times: number[] = [];
  /** Resolves with the close code. */
  readonly closed: Promise<number>;
  readonly opened: Promise<void>;
  #waiters = new Set<() => void>();

  constructor(url: string, init?: { headers?: Record<string, string> }) {
    this.ws = init?.headers
      // Deno accepts extra handshake headers as a second argument.
      ? new WebSocket(url, { headers: init.headers } as unknown as string)
      : new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error("Websocket failed"));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.onclose = (e) => {
        resolve(e.code);
        this.#wake();
      };
    });
    this.ws.onmessage = (e) => {
      this.frames.push(JSON.parse(String(e.data)));
      this.times.push(performance.now());
      this.#wake();
    };
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Send a JSON frame. */
  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Wait until `count` frames match `pred`; returns them. */
  async waitFor(
    pred: (f: Record<string, unknown>) => boolean,
    count = 1,
    timeoutMs = 5000,
  ): Promise<Record<string, unknown>[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.filter(pred);
      if (found.length >= count) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `Timed out waiting for ${count} frames, have ${found.length}`,
        );
      }
      await new Promise<void>((resolve) => {
        const id = setTimeout(done, left);
        const waiters = this.#waiters;
        function done() {
          clearTimeout(id);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  }

  /** Close (if open) and wait for the close event. */
  async close(): Promise<number> {
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close();
    return await this.closed;
  }
}

/** The store kinds the delivery tests run on. */
export function storeKinds(): readonly ("sqlite" | "postgres")[] {
  return pgUrl() === undefined ? ["sqlite"] : ["sqlite", "postgres"];
}

/** Postgres overrides of {@linkcode openTestStore}. */
export interface TestPgOptions {
  /** Connect here instead (e.g. through a proxy); the schema is dropped over `pgUrl()`. */
  readonly url?: string;
  /** The store's query deadline, ms. */
  readonly queryDeadlineMs?: number;
}

/** Open a fresh store; Postgres gets its own schema, dropped on dispose. */
export async function openTestStore(
  kind: "sqlite" | "postgres",
  pgOptions: TestPgOptions = {},
): Promise<{ store: Store; dispose(): Promise<void> }> {
  if (kind === "sqlite") {
    const store = await openKyselyStore({ kind: "sqlite", path: ":memory:" });
    return { store, dispose: () => store.close() };
  }
  const url = pgUrl() ?? "";
  const schema = `t_chat_${crypto.randomUUID().replaceAll("-", "")}`;
  const store = await openKyselyStore({ kind: "postgres", url: pgOptions.url ?? url }, {
    schema,
    poolSize: 5,
    ...(pgOptions.queryDeadlineMs === undefined
      ? {}
      : { queryDeadlineMs: pgOptions.queryDeadlineMs }),
  });
  return {
    store,
    async dispose() {
      await store.close();
      await dropPgSchema(url, schema);
    },
  };
}

/** Drop a test's Postgres schema and everything in it. */
export async function dropPgSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client(pgConnectionConfig(url));
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

/** Options for {@linkcode startChatServer}. */
export interface ChatServerOptions {
  store?: "sqlite" | "postgres";
  /** With `store: "postgres"`. */
  pg?: TestPgOptions;
  session?: SessionOptions;
  allowStrangers?: boolean;
  origins?: readonly string[];
  catchUpGraceMs?: number;
  catchUpPartsWaitMs?: number;
  /** The bus (default: a fresh LocalBus). */
  bus?: Bus;
}

/** A user `name` (password hash "x") straight in `store`, with a login token. */
export async function testUser(
  store: Store,
  auth: Auth,
  mobile: string,
  name: string,
): Promise<{ id: number; token: string }> {
  const u = await store.createUser({
    mobile,
    passwordHash: "x",
    nickname: name,
    avatar: "",
    sex: "U",
    memo: "",
  }, Date.now());
  return { id: u.id, token: await auth.issueToken(u.id) };
}

/** A running chat server for one test. */
export interface ChatServer extends AsyncDisposable {
  readonly port: number;
  readonly store: Store;
  readonly auth: Auth;
  readonly chat: ChatService;
  /** A user and a login token for them. */
  user(name: string): Promise<{ id: number; token: string }>;
  /**
   * Connect `token` to /chat (query token), wait for the open, then do what
   * a client should: send `{cmd:30, all:true}` first and wait for cmd 31.
   */
  connect(
    user: { id: number; token: string },
    options?: { headers?: Record<string, string>; catchUp?: boolean },
  ): Promise<TestSocket>;
  /** ws:// URL of /chat with a query string. */
  url(query: string): string;
}

/** Start a chat server on 127.0.0.1 port 0. */
export async function startChatServer(
  options: ChatServerOptions = {},
): Promise<ChatServer> {
  const { store, dispose } = await openTestStore(options.store ?? "sqlite", options.pg);
  const auth = new Auth({ store, tokenTtlSeconds: 3600, iterations: 1000 });
  const bus = options.bus ?? new LocalBus();
  const chat = new ChatService({
    store,
    bus,
    allowStrangers: options.allowStrangers ?? false,
    session: options.session ?? {},
    ...(options.catchUpGraceMs === undefined ? {} : { catchUpGraceMs: options.catchUpGraceMs }),
    ...(options.catchUpPartsWaitMs === undefined
      ? {}
      : { catchUpPartsWaitMs: options.catchUpPartsWaitMs }),
  });
  const app = chatRoutes({
    chat,
    auth,
    config: { origins: options.origins ?? [] },
  });
  const ac = new AbortController();
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    fetch: app.fetch,
  });
  const sockets: TestSocket[] = [];
  let n = 0;
  const port = server.addr.port;
  const url = (query: string) => `ws://127.0.0.1:${port}/chat?${query}`;
  return {
    port,
    store,
    auth,
    chat,
    url,
    user(name) {
      return testUser(store, auth, `139${String(++n).padStart(8, "0")}`, name);
    },
    async connect(user, options = {}) {
      const s = new TestSocket(
        url(`id=${user.id}&token=${encodeURIComponent(user.token)}`),
        options.headers === undefined ? undefined : { headers: options.headers },
      );
      sockets.push(s);
      await s.opened;
      if (options.catchUp ?? true) {
        s.send({ cmd: 30, all: true });
        await s.waitFor((f) => f["cmd"] === 31);
      }
      return s;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(sockets.map((s) => s.close()));
      chat.close();
      await bus.close();
      ac.abort();
      await server.finished;
      await dispose();
    },
  };
}

/** Resolve after `ms` real milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
