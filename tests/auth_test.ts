/** Auth: PBKDF2 password hashes, random hashed tokens with expiry and revocation (S7, S8). */

import {
  deepStrictEqual,
  match,
  notStrictEqual,
  ok,
  rejects,
  strictEqual,
} from "node:assert/strict";
import { Auth, LOGIN_FAILED, tokenHash } from "../lib/auth.ts";
import { ClientError } from "../lib/errors.ts";
import { MemoryStore } from "../lib/store_memory.ts";

function setup(now = () => 1_000_000) {
  const store = new MemoryStore();
  const auth = new Auth({ store, tokenTtlSeconds: 60, iterations: 1000, now });
  return { store, auth };
}

async function addUser(store: MemoryStore, auth: Auth, mobile: string, password: string) {
  return await store.createUser({
    mobile,
    passwordHash: await auth.hashPassword(password),
    nickname: mobile,
    avatar: "",
    sex: "U",
    memo: "",
  }, 0);
}

Deno.test("Auth.hashPassword() writes a salted PBKDF2-SHA256 hash that verifyPassword() accepts", async () => {
  const { auth } = setup();
  const a = await auth.hashPassword("correct horse");
  const b = await auth.hashPassword("correct horse");
  match(a, /^pbkdf2-sha256\$1000\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
  notStrictEqual(a, b, "two hashes of one password differ by salt");
  strictEqual(await auth.verifyPassword("correct horse", a), true);
  strictEqual(await auth.verifyPassword("correct horsf", a), false);
  strictEqual(await auth.verifyPassword("", a), false);
});

Deno.test("Auth.verifyPassword() returns false for malformed hashes", async (t) => {
  const { auth } = setup();
  for (
    const encoded of [
      "",
      "md5$abc",
      "pbkdf2-sha256$x$AAAA$AAAA",
      "pbkdf2-sha256$10$!!$AAAA",
      "pbkdf2-sha256$10$AAAA",
    ]
  ) {
    await t.step(JSON.stringify(encoded), async () => {
      strictEqual(await auth.verifyPassword("pw", encoded), false);
    });
  }
});

Deno.test("Auth.verifyPassword() uses the iteration count stored in the hash", async () => {
  const { store } = setup();
  const old = new Auth({ store, tokenTtlSeconds: 60, iterations: 500 });
  const current = new Auth({ store, tokenTtlSeconds: 60, iterations: 1000 });
  strictEqual(await current.verifyPassword("pw-123456", await old.hashPassword("pw-123456")), true);
});

Deno.test("S7: issueToken() gives 32 random bytes and stores only their SHA-256", async () => {
  const { store, auth } = setup();
  const { id } = await addUser(store, auth, "13800000007", "pw-123456");
  const tokens = new Set<string>();
  for (let i = 0; i < 50; i++) tokens.add(await auth.issueToken(id));
  strictEqual(tokens.size, 50);
  for (const token of tokens) match(token, /^[A-Za-z0-9_-]{43}$/);
  const [token] = tokens;
  strictEqual(await store.findTokenUser(token!, 1_000_000), undefined, "plain token is not a key");
  strictEqual(await store.findTokenUser(tokenHash(token!), 1_000_000), id);
  strictEqual(await auth.resolveToken(token!), id);
});

Deno.test("tokenHash() is the hex SHA-256 of the token's UTF-8, as stored by earlier versions", async () => {
  // The FIPS 180-2 vector, and parity with WebCrypto (how hashes were made before).
  strictEqual(tokenHash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  for (const token of ["x".repeat(43), "é-ü-中", ""]) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
    const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
    strictEqual(tokenHash(token), hex);
  }
});

Deno.test("S7: resolveToken() stops accepting a token after its lifetime", async () => {
  let clock = 1_000_000;
  const { store, auth } = setup(() => clock);
  const { id } = await addUser(store, auth, "13800000003", "pw-123456");
  const token = await auth.issueToken(id);
  clock += 59_000;
  strictEqual(await auth.resolveToken(token), id);
  clock += 2_000;
  strictEqual(await auth.resolveToken(token), undefined);
});

Deno.test("S7: revokeToken() ends a token and is idempotent", async () => {
  const { store, auth } = setup();
  const { id } = await addUser(store, auth, "13800000003", "pw-123456");
  const keep = await auth.issueToken(id);
  const token = await auth.issueToken(id);
  await auth.revokeToken(token);
  await auth.revokeToken(token);
  await auth.revokeToken("never-issued");
  strictEqual(await auth.resolveToken(token), undefined);
  strictEqual(await auth.resolveToken(keep), id);
});

Deno.test("resolveToken() ignores empty and oversized tokens", async () => {
  const { auth } = setup();
  strictEqual(await auth.resolveToken(""), undefined);
  strictEqual(await auth.resolveToken("x".repeat(10_000)), undefined);
});

Deno.test("Auth.login() issues a working token for the right password", async () => {
  const { store, auth } = setup();
  const user = await addUser(store, auth, "13800000001", "pw-123456");
  const result = await auth.login("13800000001", "pw-123456");
  deepStrictEqual(result.user, user);
  strictEqual(await auth.resolveToken(result.token), user.id);
});

Deno.test("S8: login() fails alike for an unknown mobile and a wrong password, hashing both times", async () => {
  const { store } = setup();
  let verifications = 0;
  class CountingAuth extends Auth {
    override async verifyPassword(password: string, encoded: string): Promise<boolean> {
      verifications++;
      return await super.verifyPassword(password, encoded);
    }
  }
  const auth = new CountingAuth({ store, tokenTtlSeconds: 60, iterations: 1000 });
  await addUser(store, auth, "13800000001", "pw-123456");
  const messages: string[] = [];
  for (
    const [mobile, password] of [["13800000001", "wrong-pw"], ["19999999999", "pw-123456"]] as const
  ) {
    const before = verifications;
    await rejects(auth.login(mobile, password), (e: unknown) => {
      ok(e instanceof ClientError);
      strictEqual(e.code, "unauthorized");
      messages.push(e.message);
      return true;
    });
    strictEqual(verifications - before, 1, `one hash check for ${mobile}`);
  }
  deepStrictEqual(messages, [LOGIN_FAILED, LOGIN_FAILED]);
});
