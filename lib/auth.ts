/**
 * Passwords and login tokens. Passwords are hashed with PBKDF2-SHA256 from
 * WebCrypto (random 16-byte salt, iteration count stored with the hash) and
 * compared in constant time. Tokens are 32 random bytes (base64url); the
 * store keeps only their SHA-256 hash with an expiry.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import { ClientError } from "./errors.ts";
import type { PublicUser, TokenStore, UserStore } from "./store.ts";

/** Resolves a login token to its user; the one thing request guards need. */
export interface TokenVerifier {
  /** The user id of a valid (known, unexpired, unrevoked) token, or undefined. */
  resolveToken(token: string): Promise<number | undefined>;
}

/** Options for {@linkcode Auth}. */
export interface AuthOptions {
  /** Users (for login) and token hashes. */
  store: UserStore & TokenStore;
  /** Lifetime of an issued token in seconds. */
  tokenTtlSeconds: number;
  /** PBKDF2 iterations for new hashes. @default {600000} */
  iterations?: number;
  /** Clock in epoch ms. @default {Date.now} */
  now?: () => number;
}

/** A successful login: the user and a fresh token. */
export interface LoginResult {
  readonly user: PublicUser;
  readonly token: string;
}

const SCHEME = "pbkdf2-sha256";
const HASH_BITS = 256;
/** Longest token worth hashing; real ones are 43 characters. */
const MAX_TOKEN_LENGTH = 256;
/** The one login failure message, whether or not the mobile exists. */
export const LOGIN_FAILED = "Wrong mobile or password";

/** Password hashing, login and token lifecycle. */
export class Auth implements TokenVerifier {
  #store: UserStore & TokenStore;
  #ttlMs: number;
  #iterations: number;
  #now: () => number;
  #dummyHash: Promise<string> | undefined;

  /** Build an auth service over `options.store`. */
  constructor(options: AuthOptions) {
    this.#store = options.store;
    this.#ttlMs = options.tokenTtlSeconds * 1000;
    this.#iterations = options.iterations ?? 600_000;
    this.#now = options.now ?? Date.now;
    if (!Number.isInteger(this.#iterations) || this.#iterations < 1) {
      throw new RangeError("iterations must be a positive integer");
    }
  }

  /** Hash `password` as `pbkdf2-sha256$<iter>$<salt b64>$<hash b64>`. */
  async hashPassword(password: string): Promise<string> {
    const salt = crypto.getRandomValues(new Uint8Array(16));
    const hash = await pbkdf2(password, salt, this.#iterations);
    return [SCHEME, this.#iterations, toBase64(salt), toBase64(hash)].join("$");
  }

  /** Whether `password` matches `encoded`; false for any malformed hash. */
  async verifyPassword(password: string, encoded: string): Promise<boolean> {
    const parts = encoded.split("$");
    if (parts.length !== 4 || parts[0] !== SCHEME) return false;
    const iterations = Number(parts[1]);
    if (!Number.isInteger(iterations) || iterations < 1) return false;
    let salt: Uint8Array;
    let want: Uint8Array;
    try {
      salt = fromBase64(parts[2] ?? "");
      want = fromBase64(parts[3] ?? "");
    } catch {
      return false;
    }
    const got = await pbkdf2(password, salt, iterations);
    return got.byteLength === want.byteLength && timingSafeEqual(got, want);
  }

  /**
   * Check a mobile and password; on success issue a token. Throws
   * `ClientError("unauthorized", LOGIN_FAILED)` for an unknown mobile and for
   * a wrong password alike, after the same amount of hashing.
   */
  async login(mobile: string, password: string): Promise<LoginResult> {
    const found = await this.#store.findCredentials(mobile);
    if (found === undefined) {
      this.#dummyHash ??= this.hashPassword(crypto.randomUUID());
      await this.verifyPassword(password, await this.#dummyHash);
      throw new ClientError("unauthorized", LOGIN_FAILED);
    }
    if (!(await this.verifyPassword(password, found.passwordHash))) {
      throw new ClientError("unauthorized", LOGIN_FAILED);
    }
    return { user: found.user, token: await this.issueToken(found.user.id) };
  }

  /** Issue a random token for `userId`; only its hash is stored. */
  async issueToken(userId: number): Promise<string> {
    const token = toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
    const expiresAt = this.#now() + this.#ttlMs;
    await this.#store.createToken(tokenHash(token), userId, expiresAt);
    return token;
  }

  /** The user of a valid token, or undefined (unknown, expired, revoked, junk). */
  async resolveToken(token: string): Promise<number | undefined> {
    if (token === "" || token.length > MAX_TOKEN_LENGTH) return undefined;
    return await this.#store.findTokenUser(tokenHash(token), this.#now());
  }

  /** Revoke `token`; unknown tokens are ignored. */
  async revokeToken(token: string): Promise<void> {
    if (token === "" || token.length > MAX_TOKEN_LENGTH) return;
    await this.#store.revokeToken(tokenHash(token));
  }
}

/**
 * The hex SHA-256 of a token, as the store keeps it. Synchronous: every
 * websocket connect hashes its token, and `crypto.subtle.digest` (an async
 * op) cost some 30 µs of the main thread per connect against a few here
 * (issue #7).
 */
export function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

async function pbkdf2(
  password: string,
  salt: Uint8Array,
  iterations: number,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(password),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(salt), iterations },
    key,
    HASH_BITS,
  );
  return new Uint8Array(bits);
}

function toBase64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function toBase64Url(bytes: Uint8Array): string {
  return toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
