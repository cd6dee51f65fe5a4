/**
 * Helpers for tests that run whole server processes: start `main.ts` (or a
 * release folder's start script) as a child with scoped permissions on
 * 127.0.0.1 port 0, read its port from its log, and drive it over REST and
 * websockets like a user would.
 */

import { strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { ENV_NAMES } from "../lib/config.ts";
import { startTaskV8Flags } from "../deploy/release.ts";
import { TestSocket } from "./_chat_helpers.ts";

/** The checkout's root folder. */
export const ROOT = join(import.meta.dirname!, "..");

/** A running server process. */
export interface NodeProcess extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** Main listener port. */
  readonly port: number;
  /** Metrics listener port, when CHAT_METRICS_ADDR was set. */
  readonly metricsPort: number | undefined;
  /** Where its V8 inspector listens, when started with {@linkcode StartNodeOptions.inspect}. */
  readonly inspect: InspectAddress | undefined;
  /** Everything the process logged so far (stdout and stderr). */
  log(): string;
  /** Send SIGTERM and wait for the exit code. */
  stop(): Promise<number>;
}

/**
 * The `--v8-flags` of the start task: test nodes run with the runtime
 * settings users run them with (the young-generation cap changes how much
 * memory a burst of connects leaves behind, which the reliability suite
 * checks).
 */
const START_V8_FLAGS = startTaskV8Flags(ROOT);

/** The deno flags a node needs for `dataDir` (SQLite there, loopback only). */
export function nodeFlags(dataDir: string, extraNet: readonly string[] = []): string[] {
  return [
    "run",
    "--quiet",
    "--no-prompt",
    ...START_V8_FLAGS,
    `--allow-net=${["127.0.0.1", ...extraNet].join(",")}`,
    // What the start task grants, no more: pages, assets, the append worker's modules, the data.
    `--allow-read=${join(ROOT, "static")},${join(ROOT, "templates")},${
      join(ROOT, "lib")
    },${dataDir}`,
    `--allow-write=${dataDir}`,
    `--allow-env=${ENV_NAMES.join(",")}`,
  ];
}

/** Options of {@linkcode startNode}. */
export interface StartNodeOptions {
  /** Settings for the child (HOST, PORT=0 and NO_COLOR are set unless given). */
  env: Record<string, string>;
  /** The command; default `deno` with {@linkcode nodeFlags} and main.ts. */
  command?: string;
  args?: string[];
  cwd?: string;
  /** More `--allow-net` hosts for the default command (e.g. the UDP bus's). */
  extraNet?: readonly string[];
  /**
   * Open V8's inspector there (`--inspect`, put after the first `run` of the
   * arguments), e.g. to force a GC and read the heap.
   */
  inspect?: InspectAddress;
}

/** A V8 inspector's listening address. */
export interface InspectAddress {
  readonly host: string;
  readonly port: number;
}

/** Start a server process and wait for its "Listening on" line. */
export async function startNode(options: StartNodeOptions): Promise<NodeProcess> {
  const env: Record<string, string> = {
    NO_COLOR: "1",
    HOST: "127.0.0.1",
    PORT: "0",
    ...options.env,
  };
  const dataDir = env["CHAT_DATA"] ?? "";
  const args = [
    ...(options.args ?? [...nodeFlags(dataDir, options.extraNet), join(ROOT, "main.ts")]),
  ];
  const inspect = options.inspect;
  if (inspect !== undefined) {
    const run = args.indexOf("run");
    if (run < 0) throw new TypeError(`No "run" in ${args.join(" ")} to put --inspect after`);
    args.splice(run + 1, 0, `--inspect=${inspect.host}:${inspect.port}`);
  }
  const child = new Deno.Command(options.command ?? "deno", {
    args,
    env,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let seen = "";
  const listening = Promise.withResolvers<void>();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      seen += text;
      if (/Listening on/.test(seen)) listening.resolve();
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const timer = setTimeout(() => listening.reject(new Error("No Listening line in 30 s")), 30_000);
  const exited = child.status.then((s) => {
    listening.reject(new Error(`Server exited with ${s.code}: ${seen}`));
    return s.code;
  });
  try {
    await listening.promise;
  } catch (error) {
    clearTimeout(timer);
    try {
      child.kill("SIGKILL");
    } catch { /* it exited on its own: the error says why */ }
    await exited;
    await pumps;
    throw error;
  }
  clearTimeout(timer);
  // The metrics line comes right after the listening line.
  const deadline = Date.now() + 5000;
  while (env["CHAT_METRICS_ADDR"] !== undefined && !/Metrics on/.test(seen)) {
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const port = Number(seen.match(/Listening on "http:\/\/[^"]*:(\d+)"/)?.[1]);
  const metrics = seen.match(/Metrics on "http:\/\/[^"]*:(\d+)\/metrics"/)?.[1];
  let stopped: Promise<number> | undefined;
  const stop = (): Promise<number> => {
    if (stopped === undefined) {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      stopped = exited.then(async (code) => {
        await pumps;
        return code;
      });
    }
    return stopped;
  };
  return {
    child,
    port,
    metricsPort: metrics === undefined ? undefined : Number(metrics),
    inspect,
    log: () => seen,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/** A free TCP port on 127.0.0.1 (closed again at once). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** The settings and `--allow-net` hosts of a UDP bus on loopback shared by test nodes. */
export function loopbackUdpBus(): { env: Record<string, string>; extraNet: string[] } {
  return {
    env: {
      CHAT_BUS: "udp",
      CHAT_UDP_PORT: String(freePort()),
      CHAT_SECRET: "test-cluster-secret-0123456789",
    },
    extraNet: ["0.0.0.0", "127.255.255.255"],
  };
}

/** POST a JSON body; returns the parsed envelope (code 0 asserted). */
export async function postOk(
  base: string,
  path: string,
  body: Record<string, unknown>,
  token?: string,
): Promise<Record<string, unknown>> {
  const res = await fetch(base + path, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  strictEqual(json.code, 0, `${path}: ${JSON.stringify(json)}`);
  return json;
}

/** A registered user with a login token. */
export interface TestUser {
  readonly id: number;
  readonly token: string;
}

/** Register a user through REST. */
export async function register(base: string, mobile: string, nickname: string): Promise<TestUser> {
  const r = await postOk(base, "/user/register", { mobile, passwd: "secret-pass", nickname });
  const data = r["data"] as { id: number; token: string };
  return { id: data.id, token: data.token };
}

/** Make `a` and `b` friends through REST. */
export async function befriend(base: string, a: TestUser, b: TestUser): Promise<void> {
  await postOk(base, "/contact/addfriend", { dstid: b.id }, a.token);
}

/** Open /chat as `user` at `wsBase` (ws://host:port), send catch-up `seqs`, wait for cmd 31. */
export async function connectUser(
  wsBase: string,
  user: TestUser,
  seqs: Record<string, number> = {},
): Promise<TestSocket> {
  const s = new TestSocket(`${wsBase}/chat?id=${user.id}&token=${encodeURIComponent(user.token)}`);
  await s.opened;
  s.send({ cmd: 30, seqs, all: true });
  await s.waitFor((f) => f["cmd"] === 31);
  return s;
}

/** A metric's value from a Prometheus text page (the sample without labels). */
export function metricValue(page: string, name: string): number | undefined {
  const m = page.match(new RegExp(`^${name} ([0-9.e+-]+)$`, "m"));
  return m === null ? undefined : Number(m[1]);
}

/** GET a URL's text. */
export async function getText(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
}
