/**
 * One setting's value at a time: pure parsers that each turn one
 * environment variable or flag into a typed value or throw a
 * {@linkcode ConfigError} that names the setting. `config.ts` puts them
 * together.
 *
 * @module
 */

import { join } from "node:path";

/** Where the store lives. */
export type DbSetting =
  | { readonly kind: "sqlite"; readonly path: string }
  | { readonly kind: "postgres"; readonly url: string };

/** Which bus carries messages between nodes. */
export type BusSetting =
  | { readonly kind: "udp" }
  | { readonly kind: "local" }
  | { readonly kind: "redis"; readonly url: string };

/** Log levels accepted by `CHAT_LOG_LEVEL`. */
export const LOG_LEVELS = [
  "trace",
  "debug",
  "info",
  "warning",
  "error",
  "fatal",
] as const;

/** One of {@linkcode LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

/** A host and port to listen on. */
export interface ListenAddr {
  readonly host: string;
  readonly port: number;
}

/** A setting that could not be parsed; the message names it. */
export class ConfigError extends Error {
  /** The environment variable or flag at fault. */
  readonly setting: string;

  /** Build an error for `setting`. */
  constructor(setting: string, message: string) {
    super(`Invalid ${setting}: ${message}`);
    this.name = "ConfigError";
    this.setting = setting;
  }
}

/** An integer in [min, max]; `fallback` when unset. */
export function parseInteger(
  name: string,
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (raw === undefined) return fallback;
  if (!/^[0-9]+$/.test(raw)) {
    throw new ConfigError(
      name,
      `must be an integer from ${min} to ${max}, got "${raw}"`,
    );
  }
  const n = Number(raw);
  if (n < min || n > max) {
    throw new ConfigError(
      name,
      `must be an integer from ${min} to ${max}, got ${raw}`,
    );
  }
  return n;
}

/** true/false, 1/0, yes/no, on/off (any case); `fallback` when unset. */
export function parseBool(
  name: string,
  raw: string | undefined,
  fallback: boolean,
): boolean {
  if (raw === undefined) return fallback;
  const v = raw.toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

const IPV4 =
  /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;

/** A dotted IPv4 address. */
export function parseIpv4(name: string, raw: string): string {
  if (!IPV4.test(raw)) {
    throw new ConfigError(name, `must be an IPv4 address, got "${raw}"`);
  }
  return raw;
}

/** An IP address or a host name. */
export function parseHost(name: string, raw: string): string {
  if (IPV4.test(raw) || raw === "localhost" || raw === "::" || raw === "::1") {
    return raw;
  }
  if (/^[A-Za-z0-9.-]{1,253}$/.test(raw)) return raw;
  throw new ConfigError(
    name,
    `must be an IP address or host name, got "${raw}"`,
  );
}

/** `host:port` (IPv6 in brackets); undefined when unset. */
export function parseListenAddr(name: string, raw: string | undefined): ListenAddr | undefined {
  if (raw === undefined) return undefined;
  const m = raw.match(/^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):([0-9]+)$/);
  if (m === null) {
    throw new ConfigError(name, `must be host:port, e.g. 127.0.0.1:9090, got "${raw}"`);
  }
  const host = parseHost(name, m[1] ?? m[2] ?? "");
  const port = parseInteger(name, m[3], 0, 0, 65535);
  return { host, port };
}

/** Comma-separated IP addresses; empty when unset. */
export function parseAddressList(name: string, raw: string | undefined): readonly string[] {
  if (raw === undefined) return Object.freeze([]);
  const list = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const a of list) {
    if (!IPV4.test(a) && !/^[0-9a-fA-F:]{2,39}$/.test(a)) {
      throw new ConfigError(name, `"${a}" is not an IP address`);
    }
  }
  return Object.freeze(list);
}

/** `CHAT_DB`: `sqlite:<path>` or a postgres:// URL; `<dataDir>/chat.db` when unset. */
export function parseDb(raw: string | undefined, dataDir: string): DbSetting {
  if (raw === undefined) {
    return { kind: "sqlite", path: join(dataDir, "chat.db") };
  }
  if (raw.startsWith("sqlite:")) {
    const path = raw.slice("sqlite:".length);
    if (path === "") {
      throw new ConfigError("CHAT_DB", "sqlite: needs a file path or :memory:");
    }
    return { kind: "sqlite", path };
  }
  if (raw.startsWith("postgres://") || raw.startsWith("postgresql://")) {
    return { kind: "postgres", url: parsableUrl("CHAT_DB", raw, "postgres://") };
  }
  throw new ConfigError(
    "CHAT_DB",
    `must start with sqlite: or postgres://, got "${redact(raw)}"`,
  );
}

/** `CHAT_BUS`: udp (the default), local or a redis:// URL. */
export function parseBus(raw: string | undefined): BusSetting {
  if (raw === undefined || raw === "udp") return { kind: "udp" };
  if (raw === "local") return { kind: "local" };
  if (raw.startsWith("redis://") || raw.startsWith("rediss://")) {
    return { kind: "redis", url: parsableUrl("CHAT_BUS", raw, "redis://") };
  }
  throw new ConfigError(
    "CHAT_BUS",
    `must be udp, local or redis://host:port, got "${redact(raw)}"`,
  );
}

/** `CHAT_SECRET`: at least 16 bytes; undefined when unset. */
export function parseSecret(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  // 16 bytes of entropy at the least; a short shared password is guessable offline.
  if (new TextEncoder().encode(raw).length < 16) {
    throw new ConfigError("CHAT_SECRET", "must be at least 16 bytes long");
  }
  return raw;
}

/** `CHAT_NODE_ID`: 1-64 letters, digits, '.', '_' or '-'. */
export function parseNodeId(raw: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(raw)) {
    throw new ConfigError(
      "CHAT_NODE_ID",
      `must be 1-64 letters, digits, '.', '_' or '-', got "${raw}"`,
    );
  }
  return raw;
}

/** `CHAT_ORIGINS`: comma-separated origins or `*`; empty when unset. */
export function parseOrigins(raw: string | undefined): readonly string[] {
  if (raw === undefined) return Object.freeze([]);
  const origins = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const o of origins) {
    if (o === "*") continue;
    let url: URL;
    try {
      url = new URL(o);
    } catch {
      throw new ConfigError(
        "CHAT_ORIGINS",
        `"${o}" is not an origin like http://host:port`,
      );
    }
    if (url.origin !== o.replace(/\/$/, "")) {
      throw new ConfigError(
        "CHAT_ORIGINS",
        `"${o}" is not an origin like http://host:port`,
      );
    }
  }
  return Object.freeze(origins.map((o) => o.replace(/\/$/, "")));
}

/** `CHAT_LOG_LEVEL`: one of LOG_LEVELS, any case; info when unset. */
export function parseLogLevel(raw: string | undefined): LogLevel {
  if (raw === undefined) return "info";
  const level = LOG_LEVELS.find((l) => l === raw.toLowerCase());
  if (level === undefined) {
    throw new ConfigError(
      "CHAT_LOG_LEVEL",
      `must be one of ${LOG_LEVELS.join(", ")}, got "${raw}"`,
    );
  }
  return level;
}

/** `raw` when it parses as a URL; else a ConfigError naming `name` and the `scheme` expected. */
function parsableUrl(name: string, raw: string, scheme: string): string {
  if (!URL.canParse(raw)) throw new ConfigError(name, `is not a valid ${scheme} URL`);
  return raw;
}

/** Hide credentials in a URL before it goes into an error message. */
function redact(raw: string): string {
  return raw.replace(/\/\/[^@/]*@/, "//***@");
}
