/**
 * Settings: environment variables and CLI flags parsed into one frozen,
 * validated object. Pure: the caller passes the environment and argv in.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type BusSetting,
  ConfigError,
  type DbSetting,
  type ListenAddr,
  type LogLevel,
  parseAddressList,
  parseBool,
  parseBus,
  parseDb,
  parseHost,
  parseInteger,
  parseIpv4,
  parseListenAddr,
  parseLogLevel,
  parseNodeId,
  parseOrigins,
  parseSecret,
} from "./config_values.ts";

export {
  type BusSetting,
  ConfigError,
  type DbSetting,
  type ListenAddr,
  LOG_LEVELS,
  type LogLevel,
} from "./config_values.ts";

/** The validated settings of one server process. */
export interface Config {
  /** HTTP + websocket listen address. @default {"0.0.0.0"} */
  readonly host: string;
  /** HTTP + websocket port; 0 picks a free one. @default {8080} */
  readonly port: number;
  /** Data folder: SQLite file, uploads, generated secret. @default {"./data"} */
  readonly dataDir: string;
  /** The store. @default {sqlite:$CHAT_DATA/chat.db} */
  readonly db: DbSetting;
  /** The cross-node bus. @default {udp} */
  readonly bus: BusSetting;
  /** UDP port of the LAN bus. @default {3000} */
  readonly udpPort: number;
  /** Broadcast address of the LAN bus. @default {"127.255.255.255"} */
  readonly broadcast: string;
  /** Cluster HMAC key; undefined means "generate once into the data folder". */
  readonly secret: string | undefined;
  /** Names this node in logs, metrics and envelopes. @default {random} */
  readonly nodeId: string;
  /** Websocket Origin allow-list; empty means same origin only. @default {[]} */
  readonly origins: readonly string[];
  /** Largest accepted upload in bytes. @default {10485760} */
  readonly uploadMaxBytes: number;
  /** Largest accepted JSON or form body in bytes. @default {65536} */
  readonly bodyMaxBytes: number;
  /** Lifetime of a login token in seconds. @default {604800} */
  readonly tokenTtlSeconds: number;
  /** How many groups one user may create. @default {5} */
  readonly groupsPerUser: number;
  /** Whether 1:1 messages may go to users who are not friends. @default {false} */
  readonly allowStrangers: boolean;
  /**
   * SQLite: whether a message's ack waits until it is synced to disk, so a
   * power cut cannot lose an acked message (docs/store.md). @default {false}
   */
  readonly durableAcks: boolean;
  /** Lowest log level written. @default {"info"} */
  readonly logLevel: LogLevel;
  /**
   * Separate listener for `/metrics` (and `/healthz`, `/readyz`); undefined
   * serves them on the main listener. @default {undefined}
   */
  readonly metricsAddr: ListenAddr | undefined;
  /** Websocket frames per second per connection (burst twice that). @default {100} */
  readonly msgRate: number;
  /** New websocket connections per minute per client address. @default {6000} */
  readonly connectRate: number;
  /** Open websockets per user on one node. @default {32} */
  readonly userConnections: number;
  /** Failed logins per mobile per 15 minutes. @default {10} */
  readonly loginAttempts: number;
  /** Failed logins per client address per 15 minutes. @default {100} */
  readonly loginIpAttempts: number;
  /** Registrations (tried) per client address per 15 minutes. @default {10} */
  readonly registerIpAttempts: number;
  /** Look-ups of other users (`/user/find`) per user per minute. @default {120} */
  readonly lookupRate: number;
  /** Friend adds (tried) per user per hour. @default {100} */
  readonly friendAdds: number;
  /** Group joins and creations (tried) per user per hour. @default {60} */
  readonly groupJoins: number;
  /**
   * Uploads a node reads at once (each streams to disk, holding about
   * 64 KiB); more wait their turn. @default {4}
   */
  readonly uploadConcurrency: number;
  /** Bytes of uploads one user may store in all. @default {1073741824} */
  readonly uploadQuotaBytes: number;
  /** Proxy addresses whose X-Forwarded-For is believed. @default {[]} */
  readonly trustedProxies: readonly string[];
  /**
   * Close a websocket that sent no frame for this many seconds (4001); 0
   * turns it off for clients that never send heartbeats (the websocket's own
   * ping still reaps dead peers). @default {60}
   */
  readonly idleTimeoutSeconds: number;
}

/**
 * `CHAT_UPLOAD_CONCURRENCY`'s default. Uploads stream to disk, so memory no
 * longer sets it (8 × 10 MiB at once: +30 MiB peak RSS, docs/config.md);
 * it bounds the sockets, open files and disk writes one node serves at once.
 */
export const DEFAULT_UPLOAD_CONCURRENCY = 4;

/** Every environment variable the server reads (the `--allow-env` list). */
export const ENV_NAMES = [
  "HOST",
  "PORT",
  "CHAT_DATA",
  "CHAT_DB",
  "CHAT_BUS",
  "CHAT_UDP_PORT",
  "CHAT_BROADCAST",
  "CHAT_SECRET",
  "CHAT_NODE_ID",
  "CHAT_ORIGINS",
  "CHAT_UPLOAD_MAX_BYTES",
  "CHAT_BODY_MAX_BYTES",
  "CHAT_TOKEN_TTL",
  "CHAT_GROUPS_PER_USER",
  "CHAT_ALLOW_STRANGERS",
  "CHAT_DURABLE_ACKS",
  "CHAT_LOG_LEVEL",
  "CHAT_METRICS_ADDR",
  "CHAT_MSG_RATE",
  "CHAT_CONNECT_RATE",
  "CHAT_USER_CONNECTIONS",
  "CHAT_LOGIN_ATTEMPTS",
  "CHAT_LOGIN_IP_ATTEMPTS",
  "CHAT_REGISTER_IP_ATTEMPTS",
  "CHAT_LOOKUP_RATE",
  "CHAT_FRIEND_ADDS",
  "CHAT_GROUP_JOINS",
  "CHAT_UPLOAD_QUOTA_BYTES",
  "CHAT_UPLOAD_CONCURRENCY",
  "CHAT_TRUSTED_PROXIES",
  "CHAT_IDLE_TIMEOUT",
] as const;

/** The environment as the parser sees it. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Options for {@linkcode parseConfig}. */
export interface ParseConfigOptions {
  /** Command-line arguments (without the program name). @default {[]} */
  args?: readonly string[];
  /** Makes the default node id. @default {crypto.randomUUID} */
  newId?: () => string;
}

/** CLI flags; each mirrors the environment variable in its `env` field. */
const FLAGS = {
  host: { env: "HOST" },
  port: { env: "PORT" },
  data: { env: "CHAT_DATA" },
  db: { env: "CHAT_DB" },
  bus: { env: "CHAT_BUS" },
  "udp-port": { env: "CHAT_UDP_PORT" },
  broadcast: { env: "CHAT_BROADCAST" },
  "node-id": { env: "CHAT_NODE_ID" },
  origins: { env: "CHAT_ORIGINS" },
  "log-level": { env: "CHAT_LOG_LEVEL" },
  "metrics-addr": { env: "CHAT_METRICS_ADDR" },
} as const;

/**
 * Parse settings from `env` and CLI flags (flags win). Throws
 * {@linkcode ConfigError} naming the first bad setting.
 */
export function parseConfig(
  env: Env,
  options: ParseConfigOptions = {},
): Config {
  const merged = mergeFlags(env, options.args ?? []);
  const get = (name: string): string | undefined => {
    const v = merged[name]?.trim();
    return v === "" ? undefined : v;
  };
  const dataDir = get("CHAT_DATA") ?? "./data";
  const config: Config = {
    host: parseHost("HOST", get("HOST") ?? "0.0.0.0"),
    port: parseInteger("PORT", get("PORT"), 8080, 0, 65535),
    dataDir,
    db: parseDb(get("CHAT_DB"), dataDir),
    bus: parseBus(get("CHAT_BUS")),
    udpPort: parseInteger(
      "CHAT_UDP_PORT",
      get("CHAT_UDP_PORT"),
      3000,
      1,
      65535,
    ),
    broadcast: parseIpv4(
      "CHAT_BROADCAST",
      get("CHAT_BROADCAST") ?? "127.255.255.255",
    ),
    secret: parseSecret(get("CHAT_SECRET")),
    nodeId: parseNodeId(
      get("CHAT_NODE_ID") ?? (options.newId ?? (() => crypto.randomUUID()))(),
    ),
    origins: parseOrigins(get("CHAT_ORIGINS")),
    uploadMaxBytes: parseInteger(
      "CHAT_UPLOAD_MAX_BYTES",
      get("CHAT_UPLOAD_MAX_BYTES"),
      10 * 1024 * 1024,
      1,
      1024 * 1024 * 1024,
    ),
    bodyMaxBytes: parseInteger(
      "CHAT_BODY_MAX_BYTES",
      get("CHAT_BODY_MAX_BYTES"),
      64 * 1024,
      1024,
      16 * 1024 * 1024,
    ),
    tokenTtlSeconds: parseInteger(
      "CHAT_TOKEN_TTL",
      get("CHAT_TOKEN_TTL"),
      7 * 24 * 3600,
      60,
      365 * 24 * 3600,
    ),
    groupsPerUser: parseInteger(
      "CHAT_GROUPS_PER_USER",
      get("CHAT_GROUPS_PER_USER"),
      5,
      0,
      10_000,
    ),
    allowStrangers: parseBool(
      "CHAT_ALLOW_STRANGERS",
      get("CHAT_ALLOW_STRANGERS"),
      false,
    ),
    durableAcks: parseBool("CHAT_DURABLE_ACKS", get("CHAT_DURABLE_ACKS"), false),
    logLevel: parseLogLevel(get("CHAT_LOG_LEVEL")),
    metricsAddr: parseListenAddr("CHAT_METRICS_ADDR", get("CHAT_METRICS_ADDR")),
    msgRate: parseInteger("CHAT_MSG_RATE", get("CHAT_MSG_RATE"), 100, 1, 100_000),
    idleTimeoutSeconds: parseInteger("CHAT_IDLE_TIMEOUT", get("CHAT_IDLE_TIMEOUT"), 60, 0, 86_400),
    connectRate: parseInteger("CHAT_CONNECT_RATE", get("CHAT_CONNECT_RATE"), 6000, 1, 1_000_000),
    userConnections: parseInteger(
      "CHAT_USER_CONNECTIONS",
      get("CHAT_USER_CONNECTIONS"),
      32,
      1,
      100_000,
    ),
    loginAttempts: parseInteger(
      "CHAT_LOGIN_ATTEMPTS",
      get("CHAT_LOGIN_ATTEMPTS"),
      10,
      1,
      1_000_000,
    ),
    loginIpAttempts: parseInteger(
      "CHAT_LOGIN_IP_ATTEMPTS",
      get("CHAT_LOGIN_IP_ATTEMPTS"),
      100,
      1,
      1_000_000,
    ),
    registerIpAttempts: parseInteger(
      "CHAT_REGISTER_IP_ATTEMPTS",
      get("CHAT_REGISTER_IP_ATTEMPTS"),
      10,
      1,
      1_000_000,
    ),
    lookupRate: parseInteger("CHAT_LOOKUP_RATE", get("CHAT_LOOKUP_RATE"), 120, 1, 1_000_000),
    friendAdds: parseInteger("CHAT_FRIEND_ADDS", get("CHAT_FRIEND_ADDS"), 100, 1, 1_000_000),
    groupJoins: parseInteger("CHAT_GROUP_JOINS", get("CHAT_GROUP_JOINS"), 60, 1, 1_000_000),
    uploadConcurrency: parseInteger(
      "CHAT_UPLOAD_CONCURRENCY",
      get("CHAT_UPLOAD_CONCURRENCY"),
      DEFAULT_UPLOAD_CONCURRENCY,
      1,
      1_000,
    ),
    uploadQuotaBytes: parseInteger(
      "CHAT_UPLOAD_QUOTA_BYTES",
      get("CHAT_UPLOAD_QUOTA_BYTES"),
      1024 * 1024 * 1024,
      1,
      2 ** 50,
    ),
    trustedProxies: parseAddressList("CHAT_TRUSTED_PROXIES", get("CHAT_TRUSTED_PROXIES")),
  };
  return Object.freeze(config);
}

function mergeFlags(
  env: Env,
  args: readonly string[],
): Record<string, string | undefined> {
  const options: Record<string, { type: "string" }> = {};
  for (const name of Object.keys(FLAGS)) options[name] = { type: "string" };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options,
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    const message = e instanceof Error ? e.message.split("\n")[0] ?? e.message : String(e);
    throw new ConfigError("command line", message);
  }
  const merged: Record<string, string | undefined> = { ...env };
  for (const [flag, { env: name }] of Object.entries(FLAGS)) {
    const v = values[flag];
    if (typeof v === "string") merged[name] = v;
  }
  return merged;
}
