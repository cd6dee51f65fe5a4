/**
 * Start the server under test as a child process on 127.0.0.1 with its own
 * data folder and scoped permissions, wait until it answers, and stop it.
 * Two kinds: `lanchat` (main.ts over the fixture's store, logging at
 * `warning` so per-session info lines do not count, `CHAT_BUS=local`: one
 * node, and the `start` task's `--v8-flags`) and `ref` (bench/ref_server.ts,
 * no store, Deno's defaults).
 *
 * @module
 */

import { join } from "node:path";
import { ENV_NAMES } from "../lib/config.ts";
import { startTaskV8Flags } from "../deploy/release.ts";

/** Which server to run. */
export type ServerKind = "lanchat" | "ref";

/** Options of {@linkcode startServer}. */
export interface StartOptions {
  /** The repository root (cwd of the child, where deno.json and main.ts are). */
  readonly root: string;
  /** Data folder: `chat.db` and `tokens.json` of the fixture live here. */
  readonly dataDir: string;
  /** Write a V8 CPU profile into this folder when the server stops. */
  readonly cpuProfDir?: string | undefined;
  /** How long to wait for the first answer, ms. @default {20000} */
  readonly readyTimeoutMs?: number;
  /** lanchat's store (`CHAT_DB`), e.g. a Postgres URL. @default {the fixture's SQLite file} */
  readonly db?: string | undefined;
  /** More environment for the child (`--server-env`), e.g. `MALLOC_ARENA_MAX`. @default {{}} */
  readonly env?: Readonly<Record<string, string>>;
}

/** A running server child. */
export interface ServerProcess {
  readonly kind: ServerKind;
  readonly pid: number;
  readonly port: number;
  /** The `--v8-flags=…` it runs with. */
  readonly v8Flags: readonly string[];
  /** lanchat's `/metrics` on a listener of its own (`CHAT_METRICS_ADDR`); ref has none. */
  readonly metricsUrl: string | undefined;
  /** Stop with SIGTERM (SIGKILL after 10 s); resolves with the exit code. */
  stop(): Promise<number>;
}

/** A free TCP port on 127.0.0.1 (closed again at once; a tiny race is accepted). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Spawn the server `kind` and resolve once it answers HTTP. */
export async function startServer(
  kind: ServerKind,
  options: StartOptions,
): Promise<ServerProcess> {
  const port = freePort();
  const metricsPort = kind === "lanchat" ? freePort() : undefined;
  const prof = options.cpuProfDir === undefined
    ? []
    : ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`];
  const tokens = join(options.dataDir, "tokens.json");
  // lanchat runs with the runtime flags users run it with; ref with Deno's defaults.
  const v8Flags = kind === "lanchat" ? startTaskV8Flags(options.root) : [];
  const args = kind === "lanchat"
    ? [
      "run",
      ...prof,
      ...v8Flags,
      "--allow-net=127.0.0.1",
      `--allow-read=${options.root},${options.dataDir}`,
      `--allow-write=${options.dataDir}`,
      // The pg driver reads these two as well (see the start task).
      `--allow-env=${[...ENV_NAMES, "PGBINARY", "PGREPLICATION"].join(",")}`,
      "main.ts",
    ]
    : [
      "run",
      ...prof,
      "--allow-net=127.0.0.1",
      `--allow-read=${options.dataDir}`,
      "bench/ref_server.ts",
      "--port",
      String(port),
      "--tokens",
      tokens,
    ];
  const child = new Deno.Command("deno", {
    args,
    cwd: options.root,
    env: {
      ...options.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      CHAT_DATA: options.dataDir,
      CHAT_LOG_LEVEL: "warning",
      CHAT_BUS: "local",
      // The generator connects from one address: the per-address connect limit would refuse it.
      CHAT_CONNECT_RATE: "1000000",
      ...(options.db === undefined ? {} : { CHAT_DB: options.db }),
      ...(metricsPort === undefined ? {} : { CHAT_METRICS_ADDR: `127.0.0.1:${metricsPort}` }),
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs = await Promise.all(
    ["out", "err"].map((name) =>
      Deno.open(join(options.dataDir, `${kind}.${name}.log`), { create: true, append: true })
    ),
  );
  const done = Promise.all([
    child.stdout.pipeTo(logs[0]!.writable),
    child.stderr.pipeTo(logs[1]!.writable),
  ]);
  let exited = false;
  void child.status.then(() => exited = true);
  const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/chat`);
      await res.body?.cancel();
      break;
    } catch {
      if (exited || Date.now() > deadline) {
        if (!exited) child.kill("SIGKILL");
        await child.status;
        await done;
        throw new Error(
          `Server ${kind} did not answer on port ${port}; see ${options.dataDir}/${kind}.err.log`,
        );
      }
      await delay(100);
    }
  }
  return {
    kind,
    pid: child.pid,
    port,
    v8Flags,
    metricsUrl: metricsPort === undefined ? undefined : `http://127.0.0.1:${metricsPort}/metrics`,
    async stop() {
      const code = await stopChild(child);
      await done;
      return code;
    },
  };
}

/** SIGTERM `child`, SIGKILL it if it is still there after 10 s; its exit code. */
export async function stopChild(child: Deno.ChildProcess): Promise<number> {
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  };
  kill("SIGTERM");
  const timer = setTimeout(() => kill("SIGKILL"), 10_000);
  const status = await child.status;
  clearTimeout(timer);
  return status.code;
}
