/**
 * The cluster secret: `CHAT_SECRET` when set, otherwise generated once into
 * the data folder so every node started on the same `CHAT_DATA` shares it.
 *
 * @module
 */

import { join } from "node:path";

/** Name of the generated secret file inside the data folder. */
export const SECRET_FILE = "secret";

/**
 * Read `<dataDir>/secret`, creating it (mode 0600) with 32 random bytes when
 * it is absent. Two processes racing here end up with the same secret:
 * creation is exclusive and the loser reads the winner's file.
 */
export async function loadOrCreateSecret(dataDir: string): Promise<string> {
  const path = join(dataDir, SECRET_FILE);
  const fresh = base64url(crypto.getRandomValues(new Uint8Array(32)));
  try {
    // createNew fails if the file exists, so a concurrent start cannot overwrite it.
    await Deno.writeTextFile(path, fresh + "\n", {
      createNew: true,
      mode: 0o600,
    });
    return fresh;
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  }
  // The other process may still be writing: wait briefly for a full line.
  for (let attempt = 0; attempt < 50; attempt++) {
    const text = await Deno.readTextFile(path);
    if (text.endsWith("\n")) {
      const secret = text.trim();
      if (new TextEncoder().encode(secret).length < 16) {
        throw new RangeError(
          `Secret file ${path} holds fewer than 16 bytes; delete it or set CHAT_SECRET`,
        );
      }
      return secret;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new RangeError(
    `Secret file ${path} is incomplete; delete it or set CHAT_SECRET`,
  );
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll(
    "/",
    "_",
  ).replace(/=+$/, "");
}
