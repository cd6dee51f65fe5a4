/**
 * The abuse limits of one node, built from settings: websocket upgrades per
 * client address, open sockets per user, failed logins per mobile and per
 * address, registrations per address, user lookups, friend adds and group
 * joins per user, and the per-user upload quota. (The per-connection message rate
 * is enforced by each `Session`; {@linkcode AbuseLimits.sessionRate} gives
 * its settings.) Each refusal throws a typed error the boundary turns into
 * its answer, and is reported to `onLimited` for the metric.
 *
 * Limits are per node; memory is bounded (see `rate_limit.ts`).
 *
 * @module
 */

import type { Config } from "./config.ts";
import { LimitError, RateLimitError } from "./errors.ts";
import { RateLimiter, SlotCounter } from "./rate_limit.ts";

/** Names of the limits, as used in the `limit` label of `lanchat_limited_total`. */
export const LIMIT_NAMES = [
  "messages",
  "connect_ip",
  "user_connections",
  "login",
  "register",
  "lookup",
  "friend_add",
  "group_join",
  "upload_quota",
  "upload_user",
  "upload_busy",
] as const;

/** One of {@linkcode LIMIT_NAMES}. */
export type LimitName = typeof LIMIT_NAMES[number];

/** The settings the limits read. */
export type AbuseSettings = Pick<
  Config,
  | "msgRate"
  | "connectRate"
  | "userConnections"
  | "loginAttempts"
  | "loginIpAttempts"
  | "registerIpAttempts"
  | "lookupRate"
  | "friendAdds"
  | "groupJoins"
  | "uploadQuotaBytes"
  | "trustedProxies"
>;

/** The window the login attempt counts refill over. */
export const LOGIN_WINDOW_SECONDS = 15 * 60;

/** The window the friend-add and group-join counts refill over. */
export const CONTACT_WINDOW_SECONDS = 60 * 60;

/** Options for {@linkcode AbuseLimits}. */
export interface AbuseLimitsOptions {
  /** Clock in epoch ms. @default {Date.now} */
  readonly now?: () => number;
  /** Told about every refusal (the metric). @default {none} */
  readonly onLimited?: (limit: LimitName) => void;
  /** Most keys per limiter. @default {10000} */
  readonly maxKeys?: number;
}

/** The message rate a session enforces: `perSecond` sustained, `burst` at once. */
export interface SessionRate {
  readonly perSecond: number;
  readonly burst: number;
}

/** The limits of one node; see the module doc. */
export class AbuseLimits {
  /** The settings these limits were built from. */
  readonly settings: AbuseSettings;
  #connect: RateLimiter;
  #loginMobile: RateLimiter;
  #loginIp: RateLimiter;
  #registerIp: RateLimiter;
  #lookup: RateLimiter;
  #friendAdd: RateLimiter;
  #groupJoin: RateLimiter;
  #sockets: SlotCounter;
  #onLimited: (limit: LimitName) => void;

  /** Build the limiters of `settings`. */
  constructor(settings: AbuseSettings, options: AbuseLimitsOptions = {}) {
    this.settings = settings;
    const common = {
      ...(options.now === undefined ? {} : { now: options.now }),
      ...(options.maxKeys === undefined ? {} : { maxKeys: options.maxKeys }),
    };
    // `count` at once, refilled evenly over `seconds`.
    const perWindow = (count: number, seconds: number) =>
      new RateLimiter({ burst: count, perSecond: count / seconds, ...common });
    this.#connect = perWindow(settings.connectRate, 60);
    this.#loginMobile = perWindow(settings.loginAttempts, LOGIN_WINDOW_SECONDS);
    this.#loginIp = perWindow(settings.loginIpAttempts, LOGIN_WINDOW_SECONDS);
    this.#registerIp = perWindow(settings.registerIpAttempts, LOGIN_WINDOW_SECONDS);
    this.#lookup = perWindow(settings.lookupRate, 60);
    this.#friendAdd = perWindow(settings.friendAdds, CONTACT_WINDOW_SECONDS);
    this.#groupJoin = perWindow(settings.groupJoins, CONTACT_WINDOW_SECONDS);
    this.#sockets = new SlotCounter(settings.userConnections);
    this.#onLimited = options.onLimited ?? (() => {});
  }

  /** The per-connection message rate for `SessionOptions.messageRate`. */
  get sessionRate(): SessionRate {
    return { perSecond: this.settings.msgRate, burst: this.settings.msgRate * 2 };
  }

  /** Report a refusal made elsewhere (a session's message rate). */
  limited(limit: LimitName): void {
    this.#onLimited(limit);
  }

  /** Count one websocket upgrade from `address`; throws when over the rate. */
  connect(address: string): void {
    this.#take(this.#connect, address, "connect_ip", "Too many connections from your address");
  }

  /**
   * Take one open-socket slot of `userId`; throws when the user already has
   * the most allowed. Give it back with {@linkcode releaseSocket}.
   */
  acquireSocket(userId: number): void {
    if (!this.#sockets.acquire(String(userId))) {
      this.#onLimited("user_connections");
      throw new RateLimitError(
        `Too many open connections for this user (at most ${this.settings.userConnections}), close one and retry`,
        5,
      );
    }
  }

  /** Give back a slot taken by {@linkcode acquireSocket}. */
  releaseSocket(userId: number): void {
    this.#sockets.release(String(userId));
  }

  /** Open sockets counted for `userId`. */
  socketsOf(userId: number): number {
    return this.#sockets.count(String(userId));
  }

  /**
   * Before a login: throws when `mobile` or `address` used up its failed
   * attempts. The answer is the same whether or not the mobile exists.
   */
  checkLogin(mobile: string, address: string): void {
    const byMobile = this.#loginMobile.check(mobile);
    const byIp = this.#loginIp.check(address);
    const wait = Math.max(
      byMobile.ok ? 0 : byMobile.retryAfterMs,
      byIp.ok ? 0 : byIp.retryAfterMs,
    );
    if (wait > 0) {
      this.#onLimited("login");
      throw new RateLimitError(
        `Too many login attempts, retry in ${seconds(wait)} s`,
        seconds(wait),
      );
    }
  }

  /**
   * Count one registration tried from `address` (taken or not: a 409 tells
   * whether a mobile exists, and each one costs a password hash); throws
   * when the address used up its attempts.
   */
  register(address: string): void {
    this.#take(this.#registerIp, address, "register", "Too many registrations from your address");
  }

  /**
   * Count one look-up of another user by `userId` (found or not: a 404 says
   * an id is free); throws past the rate, so no one walks every id quickly.
   */
  lookup(userId: number): void {
    this.#take(this.#lookup, String(userId), "lookup", "Too many user lookups");
  }

  /** Whether {@linkcode lookup} would pass for `userId` now (nothing counted). */
  canLookup(userId: number): boolean {
    return this.#lookup.check(String(userId)).ok;
  }

  /**
   * Count one friend add tried by `userId` (whether the user exists or is a
   * friend already: each answer also tells whether an id is taken); throws
   * past the rate. Adds are instant and mutual, so this bounds how many
   * strangers one account can reach.
   */
  friendAdd(userId: number): void {
    this.#take(this.#friendAdd, String(userId), "friend_add", "Too many friend adds");
  }

  /** Count one group join or creation tried by `userId`; throws past the rate. */
  groupJoin(userId: number): void {
    this.#take(this.#groupJoin, String(userId), "group_join", "Too many group joins");
  }

  /** Take one of `key`'s tokens; over the rate, report `limit` and throw `what`, with the wait. */
  #take(limiter: RateLimiter, key: string, limit: LimitName, what: string): void {
    const d = limiter.take(key);
    if (d.ok) return;
    this.#onLimited(limit);
    throw new RateLimitError(
      `${what}, retry in ${seconds(d.retryAfterMs)} s`,
      seconds(d.retryAfterMs),
    );
  }

  /** Count one failed login of `mobile` from `address`. */
  loginFailed(mobile: string, address: string): void {
    this.#loginMobile.take(mobile);
    this.#loginIp.take(address);
  }

  /** Forget the failed attempts of `mobile` after a successful login. */
  loginSucceeded(mobile: string): void {
    this.#loginMobile.reset(mobile);
  }

  /**
   * Throws when `usedBytes` already stored plus `addingBytes` would pass the
   * per-user upload quota.
   */
  checkUploadQuota(usedBytes: number, addingBytes: number): void {
    const quota = this.settings.uploadQuotaBytes;
    if (usedBytes + addingBytes > quota) {
      this.#onLimited("upload_quota");
      throw new LimitError(
        `Upload quota of ${quota} bytes reached (${usedBytes} bytes stored or uploading); files cannot be deleted yet, so ask an admin to raise it`,
      );
    }
  }
}

function seconds(ms: number): number {
  return Number.isFinite(ms) ? Math.max(1, Math.ceil(ms / 1000)) : LOGIN_WINDOW_SECONDS;
}

/**
 * The client address of a request: the peer's address, or — when the peer
 * is one of `trustedProxies` — the right-most `X-Forwarded-For` entry that
 * is not itself a trusted proxy. Without trusted proxies every client behind
 * a reverse proxy shares the proxy's address.
 */
export function clientAddress(
  peer: string,
  headers: Headers,
  trustedProxies: readonly string[],
): string {
  if (!trustedProxies.includes(peer)) return peer;
  const forwarded = headers.get("x-forwarded-for");
  if (forwarded === null) return peer;
  const hops = forwarded.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (!trustedProxies.includes(hop)) return hop.slice(0, 64);
  }
  return hops[0]?.slice(0, 64) ?? peer;
}

/**
 * Whether the client reached the server over https: the request's own
 * scheme, or — when the peer is one of `trustedProxies` — the proxy's
 * `X-Forwarded-Proto` (nginx terminating TLS talks plain http to the node).
 */
export function viaHttps(
  url: string,
  peer: string,
  headers: Headers,
  trustedProxies: readonly string[],
): boolean {
  if (new URL(url).protocol === "https:") return true;
  if (!trustedProxies.includes(peer)) return false;
  // The left-most value is what the first proxy saw.
  const proto = headers.get("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase();
  return proto === "https";
}

/** The peer address Deno.serve gives a handler (`info.remoteAddr`), or "unknown". */
export function peerAddress(info: unknown): string {
  if (typeof info !== "object" || info === null || !("remoteAddr" in info)) return "unknown";
  const addr = info.remoteAddr;
  if (typeof addr === "object" && addr !== null && "hostname" in addr) {
    return typeof addr.hostname === "string" ? addr.hostname : "unknown";
  }
  return "unknown";
}
