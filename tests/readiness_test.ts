/**
 * `/readyz` of a whole `main.ts` process says "store and bus reachable":
 * with `CHAT_BUS=redis://…` on a private `redis-server`, it is 200 while
 * Redis answers, 503 naming the bus once Redis goes away (the bus's
 * `ping()` is a real PING), and 200 again after Redis comes back.
 */

import { strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { ENV_NAMES } from "../lib/config.ts";
import { REDIS_ENV } from "../lib/permissions.ts";
import { getText, ROOT, startNode } from "./_node_helpers.ts";
import { freeTcpPort, redisUrl, startRedis, stopRedis, waitForTcp } from "./_redis_helpers.ts";

/** Poll `url` until its answer is `want` (10 s at most); returns the last answer. */
async function pollUntil(
  url: string,
  want: { status: number; text: string },
): Promise<{ status: number; text: string }> {
  const end = Date.now() + 10_000;
  for (;;) {
    const got = await getText(url);
    if ((got.status === want.status && got.text === want.text) || Date.now() > end) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name: "/readyz turns 503 naming the bus when the Redis server goes away, and 200 when it is back",
  // Needs redis-server, as the shared Redis tests do (CI sets CHAT_TEST_REDIS_URL).
  ignore: redisUrl() === undefined,
  async fn() {
    const redisPort = freeTcpPort();
    let redis = startRedis(redisPort);
    const dir = await Deno.makeTempDir({ prefix: "lanchat-readyz-" });
    try {
      await waitForTcp(redisPort);
      await using node = await startNode({
        env: {
          CHAT_DATA: dir,
          CHAT_BUS: `redis://127.0.0.1:${redisPort}`,
          CHAT_SECRET: "readyz-test-secret-0123456789",
        },
        args: [
          "run",
          "--quiet",
          "--no-prompt",
          "--allow-net=127.0.0.1",
          `--allow-read=${ROOT},${dir}`,
          `--allow-write=${dir}`,
          `--allow-env=${[...ENV_NAMES, ...REDIS_ENV].join(",")}`,
          join(ROOT, "main.ts"),
        ],
      });
      const readyz = `http://127.0.0.1:${node.port}/readyz`;
      const ready = { status: 200, text: "ready\n" };
      const busDown = { status: 503, text: "not ready: bus\n" };

      strictEqual((await getText(readyz)).text, ready.text);
      await stopRedis(redis);
      // The bus's PING fails at once (no offline queue); the store is still fine.
      const down = await pollUntil(readyz, busDown);
      strictEqual(down.status, 503);
      strictEqual(down.text, busDown.text);
      strictEqual((await getText(`http://127.0.0.1:${node.port}/healthz`)).status, 200);

      redis = startRedis(redisPort);
      await waitForTcp(redisPort);
      // The client reconnects by itself (back-off up to 2 s).
      const back = await pollUntil(readyz, ready);
      strictEqual(back.status, 200);
      strictEqual(back.text, ready.text);
    } finally {
      await stopRedis(redis);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
