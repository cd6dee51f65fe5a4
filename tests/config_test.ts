import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { ConfigError, parseConfig } from "../lib/config.ts";

const fixedId = () => "node-a";

Deno.test("parseConfig() gives the embedded single-node defaults", () => {
  const c = parseConfig({}, { newId: fixedId });
  strictEqual(c.host, "0.0.0.0");
  strictEqual(c.port, 8080);
  strictEqual(c.dataDir, "./data");
  deepStrictEqual(c.db, { kind: "sqlite", path: "data/chat.db" });
  deepStrictEqual(c.bus, { kind: "udp" });
  strictEqual(c.udpPort, 3000);
  strictEqual(c.broadcast, "127.255.255.255");
  strictEqual(c.secret, undefined);
  strictEqual(c.nodeId, "node-a");
  deepStrictEqual(c.origins, []);
  strictEqual(c.groupsPerUser, 5);
  strictEqual(c.allowStrangers, false);
  strictEqual(c.durableAcks, false);
  strictEqual(c.idleTimeoutSeconds, 60);
  strictEqual(Object.isFrozen(c), true);
});

Deno.test("parseConfig() reads each setting from the environment", () => {
  const c = parseConfig({
    HOST: "127.0.0.1",
    PORT: "0",
    CHAT_DATA: "/srv/chat",
    CHAT_DB: "postgres://u:p@127.0.0.1:5432/chat",
    CHAT_BUS: "redis://127.0.0.1:6379",
    CHAT_UDP_PORT: "3100",
    CHAT_BROADCAST: "10.1.2.255",
    CHAT_SECRET: "0123456789abcdef0123",
    CHAT_NODE_ID: "hall-2",
    CHAT_ORIGINS: "http://chat.lan:8080, https://chat.lan/",
    CHAT_UPLOAD_MAX_BYTES: "2048",
    CHAT_TOKEN_TTL: "3600",
    CHAT_GROUPS_PER_USER: "7",
    CHAT_ALLOW_STRANGERS: "yes",
    CHAT_DURABLE_ACKS: "true",
    CHAT_LOG_LEVEL: "DEBUG",
    CHAT_IDLE_TIMEOUT: "0",
  });
  strictEqual(c.host, "127.0.0.1");
  strictEqual(c.port, 0);
  deepStrictEqual(c.db, {
    kind: "postgres",
    url: "postgres://u:p@127.0.0.1:5432/chat",
  });
  deepStrictEqual(c.bus, { kind: "redis", url: "redis://127.0.0.1:6379" });
  strictEqual(c.udpPort, 3100);
  strictEqual(c.broadcast, "10.1.2.255");
  strictEqual(c.nodeId, "hall-2");
  deepStrictEqual(c.origins, ["http://chat.lan:8080", "https://chat.lan"]);
  strictEqual(c.uploadMaxBytes, 2048);
  strictEqual(c.tokenTtlSeconds, 3600);
  strictEqual(c.groupsPerUser, 7);
  strictEqual(c.allowStrangers, true);
  strictEqual(c.durableAcks, true);
  strictEqual(c.logLevel, "debug");
  strictEqual(c.idleTimeoutSeconds, 0, "0 turns the idle timeout off");
});

Deno.test("parseConfig() lets CLI flags override the environment", () => {
  const c = parseConfig({ PORT: "9000", CHAT_BUS: "udp" }, {
    args: ["--port", "9100", "--bus=local"],
  });
  strictEqual(c.port, 9100);
  deepStrictEqual(c.bus, { kind: "local" });
});

Deno.test("parseConfig() puts the SQLite file in CHAT_DATA", () => {
  deepStrictEqual(parseConfig({ CHAT_DATA: "/var/lib/lanchat" }).db, {
    kind: "sqlite",
    path: "/var/lib/lanchat/chat.db",
  });
  deepStrictEqual(parseConfig({ CHAT_DB: "sqlite::memory:" }).db, {
    kind: "sqlite",
    path: ":memory:",
  });
});

Deno.test("parseConfig() rejects each bad value with an error naming the setting", async (t) => {
  const cases: {
    name: string;
    env: Record<string, string>;
    args?: string[];
    setting: string;
  }[] = [
    { name: "PORT not a number", env: { PORT: "http" }, setting: "PORT" },
    { name: "PORT out of range", env: { PORT: "70000" }, setting: "PORT" },
    { name: "PORT negative", env: { PORT: "-1" }, setting: "PORT" },
    { name: "HOST with a space", env: { HOST: "a b" }, setting: "HOST" },
    {
      name: "CHAT_IDLE_TIMEOUT negative",
      env: { CHAT_IDLE_TIMEOUT: "-5" },
      setting: "CHAT_IDLE_TIMEOUT",
    },
    {
      name: "CHAT_IDLE_TIMEOUT over a day",
      env: { CHAT_IDLE_TIMEOUT: "86401" },
      setting: "CHAT_IDLE_TIMEOUT",
    },
    {
      name: "CHAT_IDLE_TIMEOUT in ms",
      env: { CHAT_IDLE_TIMEOUT: "60s" },
      setting: "CHAT_IDLE_TIMEOUT",
    },
    {
      name: "CHAT_DB unknown scheme",
      env: { CHAT_DB: "mysql://x" },
      setting: "CHAT_DB",
    },
    {
      name: "CHAT_DB empty sqlite path",
      env: { CHAT_DB: "sqlite:" },
      setting: "CHAT_DB",
    },
    {
      name: "CHAT_BUS unknown",
      env: { CHAT_BUS: "kafka" },
      setting: "CHAT_BUS",
    },
    {
      name: "CHAT_UDP_PORT zero",
      env: { CHAT_UDP_PORT: "0" },
      setting: "CHAT_UDP_PORT",
    },
    {
      name: "CHAT_BROADCAST not IPv4",
      env: { CHAT_BROADCAST: "256.1.1.1" },
      setting: "CHAT_BROADCAST",
    },
    {
      name: "CHAT_SECRET too short",
      env: { CHAT_SECRET: "short" },
      setting: "CHAT_SECRET",
    },
    {
      name: "CHAT_NODE_ID with slash",
      env: { CHAT_NODE_ID: "a/b" },
      setting: "CHAT_NODE_ID",
    },
    {
      name: "CHAT_ORIGINS with a path",
      env: { CHAT_ORIGINS: "http://a/b" },
      setting: "CHAT_ORIGINS",
    },
    {
      name: "CHAT_ORIGINS not a URL",
      env: { CHAT_ORIGINS: "chat.lan" },
      setting: "CHAT_ORIGINS",
    },
    {
      name: "CHAT_ALLOW_STRANGERS not boolean",
      env: { CHAT_ALLOW_STRANGERS: "maybe" },
      setting: "CHAT_ALLOW_STRANGERS",
    },
    {
      name: "CHAT_LOG_LEVEL unknown",
      env: { CHAT_LOG_LEVEL: "loud" },
      setting: "CHAT_LOG_LEVEL",
    },
    {
      name: "CHAT_UPLOAD_MAX_BYTES zero",
      env: { CHAT_UPLOAD_MAX_BYTES: "0" },
      setting: "CHAT_UPLOAD_MAX_BYTES",
    },
    {
      name: "unknown CLI flag",
      env: {},
      args: ["--prot", "1"],
      setting: "command line",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      throws(() => parseConfig(c.env, { args: c.args ?? [] }), (e: unknown) => {
        strictEqual(e instanceof ConfigError, true);
        const err = e as ConfigError;
        strictEqual(err.setting, c.setting);
        strictEqual(err.message.startsWith(`Invalid ${c.setting}: `), true);
        strictEqual(err.message.includes("\n"), false);
        return true;
      });
    });
  }
});

Deno.test("parseConfig() never echoes database credentials in an error", () => {
  throws(
    () => parseConfig({ CHAT_DB: "mysql://root:hunter2@db/chat" }),
    (e: unknown) => {
      strictEqual((e as Error).message.includes("hunter2"), false);
      return true;
    },
  );
});
