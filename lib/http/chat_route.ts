/**
 * `GET /chat` (the websocket) and `GET /message/history` (a page of a
 * conversation). The websocket is refused before the upgrade — 401 without
 * a valid token, 403 for a foreign Origin or an `id` that is not the
 * token's user — never opened and then closed.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { TokenVerifier } from "../auth.ts";
import type { ChatService } from "../chat_service.ts";
import type { ConnectionMeter } from "../chat_metrics.ts";
import type { Config } from "../config.ts";
import { type AbuseLimits, clientAddress, peerAddress } from "../abuse_limits.ts";
import { ClientError, RetryLaterError } from "../errors.ts";
import { DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, messageFrame } from "../protocol.ts";
import type { Connection, Session } from "../session.ts";
import { conversationKey } from "../store.ts";
import type { RawUpgrade } from "../ws/front_door.ts";
import { websocketKey } from "../ws/request_head.ts";
import type { WsHandler } from "../ws/raw_socket.ts";
import { queryFields } from "./body.ts";
import { fail, list } from "./envelope.ts";
import { requireUser, tokenFromRequest } from "./identity.ts";

/** Dependencies of {@linkcode chatRoutes}. */
export interface ChatRouteDeps {
  readonly chat: ChatService;
  readonly auth: TokenVerifier;
  /** `origins`: the websocket Origin allow-list (empty = same origin, "*" = any). */
  readonly config: Pick<Config, "origins">;
  /** Counts messages in/out and server closes of every socket. @default {none} */
  readonly meter?: ConnectionMeter;
  /** Connections per address and open sockets per user. @default {no limits} */
  readonly limits?: AbuseLimits;
}

/** The Hono sub-app with `/chat` and `/message/history`; mount it with `app.route("/", …)`. */
export function chatRoutes(deps: ChatRouteDeps): Hono {
  const app = new Hono();
  app.get("/chat", (c) => guarded(c, () => upgrade(c, deps)));
  app.get("/message/history", (c) => guarded(c, () => history(c, deps)));
  return app;
}

async function upgrade(c: Context, deps: ChatRouteDeps): Promise<Response> {
  const req = c.req.raw;
  if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return c.json(fail("Expected a websocket upgrade"), 426);
  }
  if (websocketKey(req.headers) === undefined) {
    throw new ClientError(
      "bad_request",
      "A websocket upgrade needs Sec-WebSocket-Version 13 and a Sec-WebSocket-Key",
    );
  }
  if (
    !originAllowed(
      req.headers.get("origin"),
      req.headers.get("host"),
      deps.config.origins,
    )
  ) {
    throw new ClientError("forbidden", "Origin not allowed");
  }
  const limits = deps.limits;
  limits?.connect(
    clientAddress(peerAddress(c.env), req.headers, limits.settings.trustedProxies),
  );
  const url = new URL(req.url);
  const fields: Record<string, string> = {};
  const token = url.searchParams.get("token");
  if (token !== null) fields["token"] = token;
  const id = url.searchParams.get("id");
  if (id !== null) fields["userid"] = id;
  const userId = await requireUser(deps.auth, req, fields);
  const usedToken = tokenFromRequest(req, fields) ?? "";
  limits?.acquireSocket(userId);
  const raw = rawUpgrade(c.env);
  try {
    if (raw !== undefined) {
      const { socket, response } = raw(req);
      socket.bind(new SocketBinding(socket, deps, userId, usedToken));
      return response;
    }
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.binaryType = "arraybuffer";
    const binding = new SocketBinding(socket, deps, userId, usedToken);
    for (const type of ["open", "message", "close", "error"]) {
      socket.addEventListener(type, binding);
    }
    return response;
  } catch (error) {
    limits?.releaseSocket(userId);
    throw error;
  }
}

/** The front door's websocket upgrade, when it is the front door that asks. */
function rawUpgrade(env: unknown): RawUpgrade | undefined {
  if (typeof env !== "object" || env === null || !("upgradeWebSocket" in env)) return undefined;
  const upgrade = env.upgradeWebSocket;
  return typeof upgrade === "function" ? upgrade as RawUpgrade : undefined;
}

/** What a binding needs of its socket: Deno's `WebSocket` or the front door's. */
interface ChatSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(text: string): void;
  close(code: number, reason: string): void;
}

/**
 * Everything one open websocket keeps on this side, in one object (issue #7:
 * memory per idle connection): it is the session's {@linkcode Connection}
 * and the socket's event listener (`handleEvent` for Deno's socket, the
 * {@linkcode WsHandler} methods for the front door's), so a socket costs no
 * per-socket closures beyond the login recheck.
 */
class SocketBinding implements Connection, EventListenerObject, WsHandler {
  #socket: ChatSocket;
  #deps: ChatRouteDeps;
  #userId: number;
  #token: string;
  /** Whether the user's socket slot is still held (given back once). */
  #held: boolean;
  #session: Session | undefined;

  constructor(socket: ChatSocket, deps: ChatRouteDeps, userId: number, token: string) {
    this.#socket = socket;
    this.#deps = deps;
    this.#userId = userId;
    this.#token = token;
    this.#held = deps.limits !== undefined;
  }

  handleEvent(e: Event): void {
    switch (e.type) {
      case "open":
        this.opened();
        break;
      case "message":
        this.message((e as MessageEvent).data);
        break;
      case "close":
        this.closed((e as CloseEvent).code);
        break;
      case "error":
        // A close event follows; the slot goes back there (or here if it never opened).
        if (this.#socket.readyState !== WebSocket.OPEN) this.#release();
        break;
    }
  }

  message(data: string | ArrayBuffer | Uint8Array): void {
    this.#deps.meter?.messageIn();
    this.#session?.receive(data);
  }

  closed(code: number): void {
    this.#release();
    if (this.#session === undefined) return;
    this.#deps.meter?.socketClosed();
    this.#session.closedByPeer(code);
  }

  opened(): void {
    const deps = this.#deps;
    deps.meter?.socketOpened();
    this.#session = deps.chat.open(this, this.#userId, {
      stillValid: () => this.#stillValid(),
    });
  }

  async #stillValid(): Promise<boolean> {
    return await this.#deps.auth.resolveToken(this.#token) === this.#userId;
  }

  #release(): void {
    if (this.#held) this.#deps.limits?.releaseSocket(this.#userId);
    this.#held = false;
  }

  send(text: string): void {
    this.#socket.send(text);
    this.#deps.meter?.messageOut();
  }

  close(code: number, reason: string): void {
    this.#deps.meter?.serverClosed(code);
    this.#socket.close(code, reason);
  }

  get bufferedAmount(): number {
    return this.#socket.bufferedAmount;
  }
}

/**
 * Whether a websocket from `origin` may connect. No Origin header (not a
 * browser) is allowed; "*" allows any; an empty list allows only the
 * origin whose host is the request's Host header.
 */
export function originAllowed(
  origin: string | null,
  host: string | null,
  allowed: readonly string[],
): boolean {
  if (origin === null) return true;
  if (allowed.includes("*")) return true;
  if (allowed.length > 0) return allowed.includes(origin.replace(/\/$/, ""));
  try {
    const url = new URL(origin);
    return (url.protocol === "http:" || url.protocol === "https:") &&
      host !== null && url.host === host.toLowerCase();
  } catch {
    return false;
  }
}

async function history(c: Context, deps: ChatRouteDeps): Promise<Response> {
  // The token and an old client's userid are checked like any route's.
  const fields = queryFields(c.req.raw);
  const q = (name: string) => {
    const v = fields[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const userId = await requireUser(deps.auth, c.req.raw, fields);
  const peer = intParam("peer", q("peer"), 1);
  const group = intParam("group", q("group"), 1);
  const convParam = q("conv");
  const named = [convParam, peer, group].filter((v) => v !== undefined).length;
  if (named !== 1) {
    throw new ClientError("bad_request", "Give one of conv, peer or group");
  }
  const conv = peer !== undefined
    ? conversationKey(10, userId, peer)
    : group !== undefined
    ? `g:${group}`
    : convParam ?? "";
  if (peer === userId) {
    throw new ClientError("bad_request", "No conversation with yourself");
  }
  const before = intParam("before", q("before"), 1);
  const after = intParam("after", q("after"), 0);
  if (before !== undefined && after !== undefined) {
    throw new ClientError("bad_request", "Give before or after, not both");
  }
  const limit = intParam("limit", q("limit"), 1) ?? DEFAULT_HISTORY_LIMIT;
  const rows = await deps.chat.history(userId, {
    conv,
    before,
    after,
    limit: Math.min(limit, MAX_HISTORY_LIMIT),
  });
  return c.json(list(rows.map(messageFrame)));
}

function intParam(
  name: string,
  raw: string | undefined,
  min: number,
): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^[0-9]{1,15}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= min)) {
    throw new ClientError(
      "bad_request",
      `Parameter "${name}" must be an integer of ${min} or more`,
    );
  }
  return n;
}

/** This sub-app's error boundary: client errors become envelopes; the rest goes up. */
async function guarded(
  c: Context,
  handler: () => Promise<Response>,
): Promise<Response> {
  try {
    return await handler();
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    if (error instanceof RetryLaterError) {
      c.header("retry-after", String(error.retryAfterSeconds));
    }
    return c.json(fail(error.message), error.status as ContentfulStatusCode);
  }
}
