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
      return `Missing permission to read settings: add --allow-env=${ENV_NAMES.join(",")} to the deno run command`;
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
  const app = createApp({
    store,
    auth,
    config,
    staticDir: paths.staticDir,
    templatesDir: paths.templatesDir,
    uploadsDir,
  });

  const shutdown = new AbortController();
  const onSignal = () => shutdown.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    signal: shutdown.signal,
    onListen: ({ hostname, port }) => {
      log.info("Listening on http://{hostname}:{port} as node {nodeId} (store {db}, bus {bus})", {
        hostname,
        port,
        nodeId: config.nodeId,
        db: config.db.kind,
        bus: config.bus.kind,
        secretSet: secret.length > 0,
      });
    },
  }, app.fetch);

  await server.finished;
  log.info("Stopped; closing the store");
  await store.close();
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main());
}
