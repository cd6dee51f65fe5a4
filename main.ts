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
import { Auth } from "./lib/auth.ts";
import { createApp } from "./lib/http/app.ts";
import { LocalBus } from "./lib/bus_local.ts";
import { ChatService } from "./lib/chat_service.ts";
import { chatRoutes } from "./lib/http/chat_route.ts";

const ROOT = import.meta.dirname ?? ".";

/** Write one line to stderr; used before logging is configured. */
function printLine(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
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
  const missing = firstMissing(neededPermissions(config, paths), Deno.permissions);
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

  await Deno.mkdir(config.dataDir, { recursive: true });
  const uploadsDir = join(config.dataDir, "mnt");
  await Deno.mkdir(uploadsDir, { recursive: true });
  const secret = config.secret ?? await loadOrCreateSecret(config.dataDir);

  const store = await openKyselyStore(config.db);
  const auth = new Auth({ store, tokenTtlSeconds: config.tokenTtlSeconds });
  if (config.bus.kind !== "local") {
    // TODO(#4): the UDP and Redis buses; until then every node is its own cluster.
    log.warn("CHAT_BUS={bus} is not available yet; this node delivers to its own sessions only", {
      bus: config.bus.kind,
    });
  }
  const bus = new LocalBus();
  const chat = new ChatService({ store, bus, allowStrangers: config.allowStrangers });
  const app = createApp({
    store,
    auth,
    config,
    staticDir: paths.staticDir,
    templatesDir: paths.templatesDir,
    uploadsDir,
    extraRoutes: [chatRoutes({ chat, auth, config })],
    onMembershipChange(change) {
      if (change.kind === "group_joined") chat.memberJoined(change.groupId, change.userId);
    },
  });

  const shutdown = new AbortController();
  const onSignal = () => {
    if (shutdown.signal.aborted) return;
    // Sockets first (1001 "going away": clients reconnect and catch up), then the listener.
    chat.close();
    shutdown.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    signal: shutdown.signal,
    onListen: ({ hostname, port }) => {
      log.info("Listening on {url} as node {nodeId} (store {db}, bus {bus})", {
        url: `http://${hostname}:${port}`,
        nodeId: config.nodeId,
        db: config.db.kind,
        bus: config.bus.kind,
        secretFrom: config.secret === undefined ? "data folder" : "CHAT_SECRET",
        secretBytes: secret.length,
      });
    },
  }, app.fetch);

  await server.finished;
  log.info("Stopped; closing the bus and the store");
  await bus.close();
  await store.close();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main());
}
