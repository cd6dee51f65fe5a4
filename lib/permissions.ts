/**
 * The permissions a configuration needs, so the server can name the missing
 * `--allow-*` flag in one line at start instead of failing later, mid-request.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import type { Config } from "./config.ts";
import { pgAddress } from "./_pg_url.ts";

/** One permission the server needs, with the flag that grants it and why. */
export interface NeededPermission {
  readonly descriptor: Deno.PermissionDescriptor;
  /** The command-line flag that grants it, e.g. `--allow-net=0.0.0.0:8080`. */
  readonly flag: string;
  /** What the server does with it. */
  readonly reason: string;
}

/** Environment variables the `redis` npm client reads (CHAT_BUS=redis://…). */
export const REDIS_ENV = ["REDIS_DEBUG_MAINTENANCE", "REDIS_EMIT_DIAGNOSTICS"] as const;

/** Paths the server reads besides the data folder. */
export interface AppPaths {
  /** Folder of `static/` assets. */
  readonly staticDir: string;
  /** Folder of page templates. */
  readonly templatesDir: string;
}

/** The permissions `config` needs. Pure: nothing is queried here. */
export function neededPermissions(
  config: Config,
  paths: AppPaths,
): NeededPermission[] {
  const needs: NeededPermission[] = [];
  const listen = `${hostForFlag(config.host)}:${config.port === 0 ? "0" : config.port}`;
  needs.push({
    descriptor: { name: "net", host: listen },
    flag: `--allow-net=${hostForFlag(config.host)}`,
    reason: "to listen on HOST:PORT",
  });
  // The internal HTTP server behind the websocket front door (lib/ws/serve.ts).
  needs.push({
    descriptor: { name: "net", host: "127.0.0.1:0" },
    flag: "--allow-net=127.0.0.1",
    reason: "for the internal HTTP server on loopback",
  });
  if (config.metricsAddr !== undefined) {
    const host = hostForFlag(config.metricsAddr.host);
    needs.push({
      descriptor: { name: "net", host: `${host}:${config.metricsAddr.port}` },
      flag: `--allow-net=${host}`,
      reason: "to listen on CHAT_METRICS_ADDR",
    });
  }
  const dataDir = resolve(config.dataDir);
  needs.push(
    {
      descriptor: { name: "read", path: dataDir },
      flag: `--allow-read=${config.dataDir}`,
      reason: "to read CHAT_DATA",
    },
    {
      descriptor: { name: "write", path: dataDir },
      flag: `--allow-write=${config.dataDir}`,
      reason: "to write CHAT_DATA",
    },
    {
      descriptor: { name: "read", path: resolve(paths.staticDir) },
      flag: `--allow-read=${paths.staticDir}`,
      reason: "to serve static assets",
    },
    {
      descriptor: { name: "read", path: resolve(paths.templatesDir) },
      flag: `--allow-read=${paths.templatesDir}`,
      reason: "to serve pages",
    },
  );
  if (config.db.kind === "sqlite" && config.db.path !== ":memory:") {
    const dir = dirname(resolve(config.db.path));
    needs.push(
      {
        descriptor: { name: "read", path: dir },
        flag: `--allow-read=${dir}`,
        reason: "to open the SQLite file of CHAT_DB",
      },
      {
        descriptor: { name: "write", path: dir },
        flag: `--allow-write=${dir}`,
        reason: "to write the SQLite file of CHAT_DB",
      },
    );
  }
  if (config.db.kind === "postgres") {
    // The host it connects to: a `?host=` wins over the URL's own.
    const address = pgAddress(config.db.url);
    const host = `${address.host}:${address.port}`;
    needs.push({
      descriptor: { name: "net", host },
      flag: `--allow-net=${host}`,
      reason: "to reach CHAT_DB",
    });
    // The pg driver reads these two whatever the URL says.
    for (const variable of ["PGBINARY", "PGREPLICATION"]) {
      needs.push({
        descriptor: { name: "env", variable },
        flag: `--allow-env=${variable}`,
        reason: "for the PostgreSQL driver",
      });
    }
  }
  if (config.bus.kind === "redis") {
    const url = new URL(config.bus.url);
    const host = `${url.hostname}:${url.port === "" ? "6379" : url.port}`;
    needs.push({
      descriptor: { name: "net", host },
      flag: `--allow-net=${host}`,
      reason: "to reach CHAT_BUS",
    });
    // The redis client reads these two whatever the URL says.
    for (const variable of REDIS_ENV) {
      needs.push({
        descriptor: { name: "env", variable },
        flag: `--allow-env=${variable}`,
        reason: "for the Redis client",
      });
    }
  }
  if (config.bus.kind === "udp") {
    needs.push(
      {
        descriptor: { name: "net", host: `0.0.0.0:${config.udpPort}` },
        flag: "--allow-net=0.0.0.0",
        reason: "to listen on CHAT_UDP_PORT",
      },
      {
        descriptor: {
          name: "net",
          host: `${config.broadcast}:${config.udpPort}`,
        },
        flag: `--allow-net=${config.broadcast}`,
        reason: "to send to CHAT_BROADCAST",
      },
    );
  }
  return needs;
}

/** Something that can say whether a permission is granted (`Deno.permissions`). */
export interface PermissionQuery {
  querySync(
    descriptor: Deno.PermissionDescriptor,
  ): { readonly state: Deno.PermissionState };
}

/** The first needed permission that is not granted, or undefined when all are. */
export function firstMissing(
  needs: readonly NeededPermission[],
  permissions: PermissionQuery,
): NeededPermission | undefined {
  return needs.find((n) => permissions.querySync(n.descriptor).state !== "granted");
}

/** The one line printed when a permission is missing. */
export function missingPermissionMessage(missing: NeededPermission): string {
  return `Missing permission ${missing.reason}: add ${missing.flag} to the deno run command`;
}

function hostForFlag(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
