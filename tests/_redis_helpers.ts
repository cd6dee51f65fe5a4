/**
 * A private `redis-server` for tests that stop and restart Redis (the
 * shared one at CHAT_TEST_REDIS_URL must stay up for the other tests).
 */

/** The shared test Redis (`redis://127.0.0.1:6379` in CI), or undefined when not set. */
export function redisUrl(): string | undefined {
  return Deno.env.get("CHAT_TEST_REDIS_URL");
}

/** A free TCP port on 127.0.0.1 (closed again at once). */
export function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Start `redis-server` on 127.0.0.1:`port`, keeping nothing on disk. */
export function startRedis(port: number): Deno.ChildProcess {
  return new Deno.Command("redis-server", {
    args: ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** Wait until something accepts TCP connections on 127.0.0.1:`port` (5 s at most). */
export async function waitForTcp(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`Nothing listens on ${port}`);
}

/** Stop `redis` (SIGTERM) and wait for it to exit; a no-op if it has already exited. */
export async function stopRedis(redis: Deno.ChildProcess): Promise<void> {
  try {
    redis.kill("SIGTERM");
  } catch { /* already exited */ }
  await redis.status;
}
