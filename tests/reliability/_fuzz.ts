/**
 * Shared pieces of the fuzz tests: a seeded PRNG (so every failure
 * reproduces) and generators of hostile strings and bytes.
 *
 * The seed comes from `CHAT_FUZZ_SEED` when set, else from the clock; every
 * fuzz test puts it in its name, so a failing run prints it. Reproduce with
 * `CHAT_FUZZ_SEED=<seed> deno task reliability`.
 */

import { strictEqual } from "node:assert/strict";
import type { ChatServer } from "../_chat_helpers.ts";

/** The seed of this run. */
export const SEED: number = readSeed();

function readSeed(): number {
  const raw = Deno.permissions.querySync({ name: "env", variable: "CHAT_FUZZ_SEED" }).state ===
      "granted"
    ? Deno.env.get("CHAT_FUZZ_SEED")
    : undefined;
  const n = Number(raw);
  return raw !== undefined && raw !== "" && Number.isSafeInteger(n) ? n >>> 0 : Date.now() >>> 0;
}

/** A small, fast, seeded PRNG (mulberry32). */
export class Rng {
  #state: number;

  /** A generator for `seed` (a 32-bit unsigned integer). */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** One element of `list`. */
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)]!;
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /** A string of `n` code points drawn from {@linkcode NASTY_CHARS} and ASCII. */
  text(n: number): string {
    let s = "";
    for (let i = 0; i < n; i++) {
      s += this.next() < 0.5 ? String.fromCharCode(32 + this.int(95)) : this.pick(NASTY_CHARS);
    }
    return s;
  }
}

/** Characters that break naive code: controls, lone surrogates, RTL, zero-width, emoji, NUL. */
export const NASTY_CHARS: readonly string[] = [
  "\u0000",
  "\u0001",
  "\u001b",
  "\u007f",
  "\u0085",
  "\u00a0",
  "\u200b",
  "\u200d",
  "\u202e",
  "\u2028",
  "\u2029",
  "\ufeff",
  "\ufffd",
  "\ud800",
  "\udfff",
  "\u0301",
  "😀",
  "👩‍👩‍👧",
  "中",
  "ﷺ",
  "\\",
  '"',
  "'",
  "<",
  ">",
  "&",
  "%",
  "%00",
  "../",
  "..\\",
  "\r\n",
];

/** Values of every JSON type that are wrong where an integer or a short string is wanted. */
export const WRONG_VALUES: readonly unknown[] = [
  null,
  true,
  false,
  -1,
  0,
  1.5,
  -0,
  1e308,
  Number.MAX_SAFE_INTEGER + 2,
  "",
  "1",
  "abc",
  "１",
  [],
  [1],
  {},
  { a: 1 },
  "x".repeat(70_000),
];

/** Path traversal spellings for names. */
export const TRAVERSALS: readonly string[] = [
  "../../../../etc/passwd",
  "..\\..\\..\\windows\\win.ini",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "..%2f..%2fdeno.json",
  "....//....//etc/passwd",
  "/etc/passwd",
  "C:\\boot.ini",
  "..\u0000.png",
  "a/../../b.png",
  "\u202egnp.lmth",
  "../data/chat.db",
  "x.png/../../../main.ts",
];

/** JSON text nested `depth` levels deep (arrays or objects). */
export function deepJson(depth: number, object: boolean): string {
  return object
    ? '{"a":'.repeat(depth) + "1" + "}".repeat(depth)
    : "[".repeat(depth) + "1" + "]".repeat(depth);
}

/** After a fuzz run: the chat server still answers a new client, and no message was stored. */
export async function assertServingNothingStored(server: ChatServer): Promise<void> {
  const user = await server.user("after");
  const socket = await server.connect(user);
  socket.send({ cmd: 0 });
  await socket.waitFor((f) => f["cmd"] === 0);
  for (let id = 1; id <= user.id; id++) {
    strictEqual((await server.store.lastSeqs(id)).size, 0, `user ${id} has no stored message`);
  }
}
