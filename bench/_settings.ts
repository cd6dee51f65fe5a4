/**
 * The load generator's options (docs/bench.md lists each one and its
 * default), parsed into {@linkcode Settings}.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import type { ServerKind } from "./_server_proc.ts";

/** What one `deno task bench` run does. */
export interface Settings {
  conns: number;
  storm: number;
  servers: ServerKind[];
  scenarios: Set<string>;
  stepSeconds: number;
  /**
   * The first (light-load) step of each scenario lasts at least this long:
   * its p99 is the light-load figure, and at 100 msgs/s a 3 s step has 300
   * samples, so its p99 was the third slowest message.
   */
  lightStepSeconds: number;
  groupSize: number;
  rates1to1: number[];
  ratesGroup: number[];
  stormConcurrency: number;
  /** How long the storm's connections stay open and idle after the 2 s reading. */
  stormIdleSeconds: number;
  profileDir: string | undefined;
  budgetSeconds: number;
  results: string;
  label: string;
  /** lanchat's store: undefined = a SQLite file, else a Postgres URL. */
  db: string | undefined;
  /** More environment for the server processes only (`--server-env K=V,…`), e.g. `MALLOC_ARENA_MAX`. */
  serverEnv: Record<string, string>;
}

function numbers(raw: string): number[] {
  return raw.split(",").map(Number).filter((n) => n > 0);
}

/** Parse `args` (the task's arguments); `root` is the repository (default results file). */
export function readSettings(args: readonly string[], root: string): Settings {
  const { values } = parseArgs({
    args: [...args],
    options: {
      conns: { type: "string", default: "1000" },
      storm: { type: "string", default: "10000" },
      servers: { type: "string", default: "ref,lanchat" },
      scenarios: { type: "string", default: "storm,1to1,group" },
      "step-seconds": { type: "string", default: "3" },
      "light-step-seconds": { type: "string", default: "10" },
      "group-size": { type: "string", default: "100" },
      "rates-1to1": {
        type: "string",
        default: "100,1000,2000,4000,8000,12000,16000,20000,24000,28000,32000,48000,64000",
      },
      "rates-group": { type: "string", default: "10,50,100,200,300,450,700,1000,1500,2000,2500" },
      "storm-concurrency": { type: "string", default: "500" },
      "storm-idle-seconds": { type: "string", default: "60" },
      profile: { type: "string" },
      "budget-seconds": { type: "string", default: "600" },
      results: { type: "string", default: join(root, "bench", "results.jsonl") },
      label: { type: "string", default: "" },
      db: { type: "string" },
      "server-env": { type: "string", default: "" },
    },
  });
  const servers = values.servers.split(",").filter((s): s is ServerKind =>
    s === "ref" || s === "lanchat"
  );
  return {
    conns: Number(values.conns),
    storm: Number(values.storm),
    servers,
    scenarios: new Set(values.scenarios.split(",")),
    stepSeconds: Number(values["step-seconds"]),
    lightStepSeconds: Number(values["light-step-seconds"]),
    groupSize: Number(values["group-size"]),
    rates1to1: numbers(values["rates-1to1"]),
    ratesGroup: numbers(values["rates-group"]),
    stormConcurrency: Number(values["storm-concurrency"]),
    stormIdleSeconds: Number(values["storm-idle-seconds"]),
    profileDir: values.profile,
    budgetSeconds: Number(values["budget-seconds"]),
    results: values.results,
    label: values.label,
    db: parseDbOption(values.db),
    serverEnv: parseServerEnv(values["server-env"]),
  };
}

/** `--server-env`: comma-separated `NAME=value` pairs (values without commas). */
export function parseServerEnv(raw: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of raw.split(",").filter((p) => p !== "")) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(pair);
    if (m === null) throw new TypeError(`--server-env takes NAME=value pairs, not ${pair}`);
    env[m[1]!] = m[2]!;
  }
  return env;
}

/** `--db`: absent or "sqlite" = a SQLite file; otherwise a postgres:// URL on loopback. */
function parseDbOption(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === "sqlite") return undefined;
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (!/^postgres(ql)?:$/.test(url?.protocol ?? "") || url?.hostname !== "127.0.0.1") {
    throw new TypeError(`--db must be "sqlite" or a postgres:// URL on 127.0.0.1, not ${raw}`);
  }
  return raw;
}
