/**
 * The one place that reads settings and wires the server together.
 *
 * Run with `deno task start` (see README.md); settings are in docs/config.md.
 *
 * @module
 */

import { configure, getConsoleSink, getLogger } from "@logtape/logtape";
import { join } from "node:path";
import { type Config, ConfigError, ENV_NAMES, parseConfig } from "./lib/config.ts";
import { firstMissing, missingPermissionMessage, neededPermissions } from "./lib/permissions.ts";
import { loadOrCreateSecret } from "./lib/secret.ts";
import { openKyselyStore } from "./lib/store_kysely.ts";
import { DiskFullLog } from "./lib/disk_full_log.ts";
import { Auth } from "./lib/auth.ts";
import { createApp } from "./lib/http/app.ts";
import { type Bus, storeMessageLoader, storeRecentHeadsLoader } from "./lib/bus.ts";
import { LocalBus } from "./lib/bus_local.ts";
import { openUdpBus } from "./lib/bus_udp.ts";
import { openRedisBus } from "./lib/bus_redis.ts";
import type { MessageStore } from "./lib/store.ts";
import { ChatService } from "./lib/chat_service.ts";
import { AbuseLimits } from "./lib/abuse_limits.ts";
import { UploadGate } from "./lib/upload_gate.ts";
import { chatRoutes } from "./lib/http/chat_route.ts";
import { Registry } from "./lib/metrics.ts";
import { ChatMetrics } from "./lib/chat_metrics.ts";
import { LoopLagProbe } from "./lib/loop_lag.ts";
import { SYSTEM_TIMERS } from "./lib/deadline_queue.ts";
import { timedStore } from "./lib/store_timed.ts";
import { DrainState, waitUntil } from "./lib/drain.ts";
import { drainGate, opsRoutes, type ReadinessCheck } from "./lib/http/ops_routes.ts";
import { serve } from "./lib/ws/serve.ts";

const ROOT = import.meta.dirname ?? ".";
/** Whether this runs from a `deno compile` binary (its modules live under deno-compile-*). */
const EMBEDDED = import.meta.url.includes("deno-compile-");
/** How long a drain waits for sessions to finish their in-flight frames. */
const DRAIN_TIMEOUT_MS = 10_000;

/** Write one line to stderr; used before logging is configured. */
function printLine(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
}

/** An error as one line for a fatal start message (no stack: the setting named says what to fix). */
function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Read the settings this server knows, asking only for the names it may read. */
function readEnv(): Record<string, string | undefined> | string {
  const env: Record<string, string | undefined> = {};
  for (const name of ENV_NAMES) {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return `Missing permission to read settings: add --allow-env=${
        ENV_NAMES.join(",")
      } to the deno run command`;
    }
    env[name] = Deno.env.get(name);
  }
  return env;
}

/** Start the server; resolves with the process exit code once it has stopped. */
async function main(): Promise<number> {
  const env = readEnv();
  if (typeof env === "string") {
    printLine(env);
    return 2;
  }
  let config: Config;
  try {
    config = parseConfig(env, { args: Deno.args });
  } catch (e) {
    if (e instanceof ConfigError) {
      printLine(e.message);
      return 2;
    }
    throw e;
  }
  const paths = { staticDir: join(ROOT, "static"), templatesDir: join(ROOT, "templates") };
  // In a `deno compile` binary static/ and templates/ are embedded and read without a grant.
  const needs = neededPermissions(config, paths).filter((n) =>
    !(EMBEDDED && n.descriptor.name === "read" && n.descriptor.path?.toString().startsWith(ROOT))
  );
  const missing = firstMissing(needs, Deno.permissions);
  if (missing !== undefined) {
    printLine(missingPermissionMessage(missing));
    return 2;
  }

  await configure({
    sinks: { console: getConsoleSink() },
    loggers: [
      { category: ["chat"], lowestLevel: config.logLevel, sinks: ["console"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
    ],
  });
  const log = getLogger(["chat", "main"]);

  const uploadsDir = join(config.dataDir, "mnt");
  let secret: string;
  try {
    await Deno.mkdir(config.dataDir, { recursive: true });
    await Deno.mkdir(uploadsDir, { recursive: true });
    secret = config.secret ?? await loadOrCreateSecret(config.dataDir);
  } catch (error) {
    log.fatal("Cannot use the data folder {dir} (CHAT_DATA): {reason}", {
      dir: config.dataDir,
      reason: reason(error),
    });
    return 1;
  }

  // One for the node: appends and HTTP writes that meet a full disk log once per 10 s together.
  const diskFullLog = new DiskFullLog();
  let rawStore: Awaited<ReturnType<typeof openKyselyStore>>;
  try {
    rawStore = await openKyselyStore(config.db, {
      appendWorker: new URL("./lib/_sqlite_append_worker.ts", import.meta.url),
      durableAcks: config.durableAcks,
      diskFullLog,
    });
  } catch (error) {
    log.fatal("Cannot open the store (CHAT_DB, {db}): {reason}", {
      db: config.db.kind,
      reason: reason(error),
    });
    return 1;
  }
  const registry = new Registry();
  const drain = new DrainState();
  // Read at scrape time; `chat` and `bus` exist by then.
  const metrics = new ChatMetrics(registry, {
    sessions: () => chat.stats().entries,
    busStats: () => bus.stats(),
    draining: () => drain.draining,
    memory: () => Deno.memoryUsage(),
  });
  const loopLag = new LoopLagProbe({
    timers: SYSTEM_TIMERS,
    clock: () => performance.now(),
    observe: (seconds) => metrics.loopLag(seconds),
  });
  loopLag.start();
  // Everything else uses the store through the timing wrapper (lanchat_store_seconds).
  const store = timedStore(rawStore, (op, seconds) => metrics.storeCall(op, seconds));
  const auth = new Auth({ store, tokenTtlSeconds: config.tokenTtlSeconds });
  let bus: Bus;
  try {
    bus = await openBus(config, secret, store);
  } catch (error) {
    log.fatal("Cannot open the bus (CHAT_BUS={bus}): {error}", { bus: config.bus.kind, error });
    loopLag.stop();
    await rawStore.close();
    return 1;
  }
  const limits = new AbuseLimits(config, { onLimited: (limit) => metrics.limited(limit) });
  const chat = new ChatService({
    store,
    bus,
    allowStrangers: config.allowStrangers,
    session: {
      messageRate: limits.sessionRate,
      onRateLimited: () => limits.limited("messages"),
      idleTimeoutMs: config.idleTimeoutSeconds * 1000,
    },
  });
  const checks: ReadinessCheck[] = [
    { name: "store", check: () => rawStore.ping() },
    { name: "bus", check: () => bus.ping() },
  ];
  const separateMetrics = config.metricsAddr !== undefined;
  const app = createApp({
    store,
    auth,
    config,
    staticDir: paths.staticDir,
    templatesDir: paths.templatesDir,
    uploadsDir,
    limits,
    uploads: new UploadGate({
      concurrent: config.uploadConcurrency,
      onLimited: (limit) => metrics.limited(limit),
    }),
    diskFullLog,
    extraRoutes: [
      chatRoutes({ chat, auth, config, meter: metrics, limits }),
      opsRoutes({ drain, checks, ...(separateMetrics ? {} : { registry }) }),
    ],
    onMembershipChange(change) {
      if (change.kind === "group_joined") {
        chat.memberJoined(change.groupId, change.userId, { seq: change.seq });
      }
    },
  });

  const shutdown = new AbortController();
  const onSignal = () => {
    if (!drain.start()) return;
    // /readyz turns 503 and new websocket upgrades get 503 (nginx tries the next
    // node); each socket finishes the frames it has, then closes with 4002
    // "reconnect elsewhere"; then the listener stops and in-flight requests end.
    log.info("Draining: closing sockets with 4002, then stopping", {});
    void chat.drain(DRAIN_TIMEOUT_MS)
      // Let the close handshakes finish, or aborting the listener cuts them off.
      .then(() => waitUntil(() => metrics.openSockets === 0, { timeoutMs: 2000 }))
      .finally(() => {
        chat.close();
        shutdown.abort();
      });
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  let server: ReturnType<typeof serve>;
  try {
    server = serve({
      hostname: config.host,
      port: config.port,
      signal: shutdown.signal,
      fetch: drainGate(app.fetch, drain),
    });
  } catch (error) {
    log.fatal("Cannot listen on {addr} (HOST, PORT): {reason}", {
      addr: `${config.host}:${config.port}`,
      reason: reason(error),
    });
    chat.close();
    loopLag.stop();
    await bus.close();
    await rawStore.close();
    return 1;
  }
  const { hostname, port } = server.addr;
  log.info("Listening on {url} as node {nodeId} (store {db}, bus {bus})", {
    url: `http://${hostname}:${port}`,
    nodeId: config.nodeId,
    db: config.db.kind,
    bus: config.bus.kind,
    secretFrom: config.secret === undefined ? "data folder" : "CHAT_SECRET",
    secretBytes: secret.length,
  });

  let metricsServer: Deno.HttpServer | undefined;
  let code = 0;
  try {
    metricsServer = config.metricsAddr === undefined ? undefined : Deno.serve({
      hostname: config.metricsAddr.host,
      port: config.metricsAddr.port,
      signal: shutdown.signal,
      onListen: ({ hostname, port }) => {
        log.info("Metrics on {url}", { url: `http://${hostname}:${port}/metrics` });
      },
    }, opsRoutes({ drain, checks, registry }).fetch);
  } catch (error) {
    log.fatal("Cannot listen on {addr} (CHAT_METRICS_ADDR): {reason}", {
      addr: `${config.metricsAddr?.host}:${config.metricsAddr?.port}`,
      reason: reason(error),
    });
    code = 1;
    chat.close();
    shutdown.abort();
  }

  await server.finished;
  await metricsServer?.finished;
  log.info("Stopped; closing the bus and the store");
  loopLag.stop();
  await bus.close();
  await rawStore.close();
  return code;
}

/** The bus `config.bus` names: UDP broadcast (default), Redis pub/sub, or in-process. */
function openBus(config: Config, secret: string, store: MessageStore): Promise<Bus> {
  const loaders = {
    loadMessage: storeMessageLoader(store),
    loadRecentHeads: storeRecentHeadsLoader(store),
  };
  switch (config.bus.kind) {
    case "local":
      return Promise.resolve(new LocalBus());
    case "redis":
      return openRedisBus({ url: config.bus.url, secret, nodeId: config.nodeId, ...loaders });
    case "udp":
      return openUdpBus({
        secret,
        nodeId: config.nodeId,
        port: config.udpPort,
        broadcast: config.broadcast,
        ...loaders,
      });
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
