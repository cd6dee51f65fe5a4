import { notStrictEqual, rejects, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { loadOrCreateSecret, SECRET_FILE } from "../lib/secret.ts";

Deno.test("loadOrCreateSecret() generates once and then returns the same secret", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = await loadOrCreateSecret(dir);
    strictEqual(first.length >= 40, true);
    strictEqual(await loadOrCreateSecret(dir), first);
    strictEqual((await Deno.stat(join(dir, SECRET_FILE))).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadOrCreateSecret() gives two racing starts the same secret", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const all = await Promise.all(
      Array.from({ length: 8 }, () => loadOrCreateSecret(dir)),
    );
    strictEqual(new Set(all).size, 1);
    const other = await Deno.makeTempDir();
    notStrictEqual(await loadOrCreateSecret(other), all[0]);
    await Deno.remove(other, { recursive: true });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadOrCreateSecret() refuses a secret file that is too short", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, SECRET_FILE), "abc\n");
    await rejects(loadOrCreateSecret(dir), /fewer than 16 bytes/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
