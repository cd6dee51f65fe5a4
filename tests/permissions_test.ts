import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { parseConfig } from "../lib/config.ts";
import { firstMissing, missingPermissionMessage, neededPermissions } from "../lib/permissions.ts";

const paths = { staticDir: "static", templatesDir: "templates" };

/** A recording permission table: grants only what it was told to. */
function grantOnly(granted: (d: Deno.PermissionDescriptor) => boolean) {
  const asked: Deno.PermissionDescriptor[] = [];
  return {
    asked,
    querySync(d: Deno.PermissionDescriptor) {
      asked.push(d);
      return { state: granted(d) ? "granted" as const : "prompt" as const };
    },
  };
}

Deno.test("neededPermissions() asks for the listener, its internal loopback server, data folder and LAN bus on defaults", () => {
  const needs = neededPermissions(parseConfig({}), paths);
  const hosts = needs.filter((n) => n.descriptor.name === "net").map((n) =>
    (n.descriptor as Deno.NetPermissionDescriptor).host
  );
  deepStrictEqual(hosts, [
    "0.0.0.0:8080",
    "127.0.0.1:0",
    "0.0.0.0:3000",
    "127.255.255.255:3000",
  ]);
  strictEqual(needs.some((n) => n.descriptor.name === "write"), true);
});

Deno.test("neededPermissions() asks for the Postgres and Redis hosts of a cluster", () => {
  const needs = neededPermissions(
    parseConfig({
      CHAT_DB: "postgres://db.lan/chat",
      CHAT_BUS: "redis://cache.lan:6380",
    }),
    paths,
  );
  const flags = needs.map((n) => n.flag);
  strictEqual(flags.includes("--allow-net=db.lan:5432"), true);
  strictEqual(flags.includes("--allow-net=cache.lan:6380"), true);
  strictEqual(flags.includes("--allow-env=REDIS_DEBUG_MAINTENANCE"), true);
  strictEqual(flags.includes("--allow-env=REDIS_EMIT_DIAGNOSTICS"), true);
  strictEqual(flags.some((f) => f.includes("255")), false);
});

Deno.test("neededPermissions() asks for the Postgres host a ?host= names, the one pg connects to", () => {
  const needs = neededPermissions(
    parseConfig({ CHAT_DB: "postgres://u@localhost/chat?host=10.0.0.9", CHAT_BUS: "local" }),
    paths,
  );
  const flags = needs.map((n) => n.flag);
  strictEqual(flags.includes("--allow-net=10.0.0.9:5432"), true, flags.join(" "));
  strictEqual(flags.includes("--allow-net=localhost:5432"), false);
});

Deno.test("firstMissing() names the flag for the first permission not granted", () => {
  const config = parseConfig({ PORT: "8081", CHAT_BUS: "local" });
  const table = grantOnly((d) => d.name !== "net");
  const missing = firstMissing(neededPermissions(config, paths), table);
  strictEqual(missing?.flag, "--allow-net=0.0.0.0");
  const line = missingPermissionMessage(missing!);
  strictEqual(
    line,
    "Missing permission to listen on HOST:PORT: add --allow-net=0.0.0.0 to the deno run command",
  );
});

Deno.test("firstMissing() is undefined when every permission is granted", () => {
  const table = grantOnly(() => true);
  strictEqual(
    firstMissing(neededPermissions(parseConfig({}), paths), table),
    undefined,
  );
  strictEqual(table.asked.length > 0, true);
});
