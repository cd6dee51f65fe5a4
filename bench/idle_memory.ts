/**
 * Memory per idle websocket connection (issue #7), lanchat against the bare
 * reference server: for each server kind, a fresh fixture, the server started
 * with `--inspect=127.0.0.1:<port>` (lanchat also with the `start` task's
 * `--v8-flags`), then idle clients opened in stages (`--conns 2000,10000`,
 * cumulative). At each stage, 2 s after the last connect: RSS as the bench
 * reads it and the JS heap as it is, then a forced full GC, then RSS and
 * `Deno.memoryUsage()` read inside the server. `--snapshot-dir`
 * also writes a heap snapshot at the base and at the first stage (compare
 * them with `bench/heap_diff.ts`). See docs/bench.md.
 *
 * ```
 * deno task bench:memory --conns 2000,10000 --snapshot-dir /tmp/heap
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { ENV_NAMES } from "../lib/config.ts";
import { closeClients, openClients, Recorder } from "./_clients.ts";
import { createFixture, writeFixtureFiles } from "./fixture.ts";
import { Inspector } from "./_inspector.ts";
import { loadAverage, rssKiB } from "./_procfs.ts";
import { stopChild } from "./_server_proc.ts";
import { startTaskV8Flags } from "../deploy/release.ts";

const ROOT = resolve(import.meta.dirname ?? ".", "..");

/** One reading at one stage. */
interface Reading {
  conns: number;
  failed: number;
  /** RSS 2 s after the last connect, before any forced GC (what `deno task bench` reads). */
  rssKiB: number;
  /** JS heap in use and reserved at that moment, before the forced GC. */
  heapUsedNoGcKiB: number;
  heapTotalNoGcKiB: number;
  /** RSS after a forced full GC. */
  rssGcKiB: number;
  /** JS heap in use after a forced full GC. */
  heapUsedKiB: number;
  /** JS heap reserved (used + free pages V8 keeps) after the GC. */
  heapTotalKiB: number;
  /** `external` of Deno.memoryUsage() after the GC (ArrayBuffers and the like). */
  externalKiB: number;
}

function say(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

/** The server's command line; `v8Flags` are lanchat's (the start task's). */
function serverArgs(
  kind: string,
  dataDir: string,
  ports: { port: number; inspectPort: number },
  v8Flags: readonly string[],
): string[] {
  const inspect = `--inspect=127.0.0.1:${ports.inspectPort}`;
  return kind === "lanchat"
    ? [
      "run",
      inspect,
      ...v8Flags,
      "--allow-net=127.0.0.1",
      `--allow-read=${ROOT},${dataDir}`,
      `--allow-write=${dataDir}`,
      `--allow-env=${ENV_NAMES.join(",")}`,
      "main.ts",
    ]
    : [
      "run",
      inspect,
      "--allow-net=127.0.0.1",
      `--allow-read=${dataDir}`,
      "bench/ref_server.ts",
      "--port",
      String(ports.port),
      "--tokens",
      join(dataDir, "tokens.json"),
    ];
}

async function waitForHttp(port: number, child: Deno.ChildProcess): Promise<void> {
  let exited = false;
  void child.status.then(() => exited = true);
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/chat`);
      await res.body?.cancel();
      return;
    } catch {
      if (exited || Date.now() > deadline) throw new Error(`Server on ${port} did not answer`);
      await delay(100);
    }
  }
}

async function read(pid: number, insp: Inspector, conns: number, failed: number) {
  const rss = await rssKiB(pid);
  const before = await insp.memoryNow();
  const mem = await insp.memory();
  return {
    conns,
    failed,
    rssKiB: rss,
    heapUsedNoGcKiB: Math.round(before.heapUsed / 1024),
    heapTotalNoGcKiB: Math.round(before.heapTotal / 1024),
    rssGcKiB: await rssKiB(pid),
    heapUsedKiB: Math.round(mem.heapUsed / 1024),
    heapTotalKiB: Math.round(mem.heapTotal / 1024),
    externalKiB: Math.round(mem.external / 1024),
  } satisfies Reading;
}

async function measure(
  kind: string,
  stages: number[],
  tmp: string,
  snapshotDir: string | undefined,
): Promise<Reading[]> {
  const dataDir = join(tmp, kind);
  await Deno.mkdir(dataDir, { recursive: true });
  const fixture = await createFixture({ kind: "sqlite", path: join(dataDir, "chat.db") }, {
    users: Math.max(...stages),
    groupSize: 100,
  });
  await writeFixtureFiles(fixture, join(dataDir, "tokens.json"));
  const port = freePort();
  const inspectPort = freePort();
  const child = new Deno.Command("deno", {
    args: serverArgs(kind, dataDir, { port, inspectPort }, startTaskV8Flags(ROOT)),
    cwd: ROOT,
    env: {
      HOST: "127.0.0.1",
      PORT: String(port),
      CHAT_DATA: dataDir,
      CHAT_LOG_LEVEL: "warning",
      CHAT_BUS: "local",
      // One address opens every connection here: lift the per-address connect limit.
      CHAT_CONNECT_RATE: "1000000",
    },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const readings: Reading[] = [];
  const rec = new Recorder();
  const clients = [];
  let insp: Inspector | undefined;
  try {
    await waitForHttp(port, child);
    insp = await Inspector.connect(inspectPort);
    await delay(1000);
    readings.push(await read(child.pid, insp, 0, 0));
    if (snapshotDir !== undefined) await insp.snapshot(join(snapshotDir, `${kind}-0.heapsnapshot`));
    let failed = 0;
    for (const [i, stage] of stages.entries()) {
      const opened = await openClients(
        `ws://127.0.0.1:${port}/chat`,
        fixture.users.slice(clients.length, stage),
        rec,
        { concurrency: 200, timeoutMs: 120_000 },
      );
      clients.push(...opened.clients);
      failed += opened.failed;
      await delay(2000); // Past the 1 s catch-up grace.
      const r = await read(child.pid, insp, clients.length, failed);
      readings.push(r);
      say(`[${kind}] ${JSON.stringify(r)}`);
      if (i === 0 && snapshotDir !== undefined) {
        await insp.snapshot(join(snapshotDir, `${kind}-${stage}.heapsnapshot`));
      }
    }
  } finally {
    insp?.close();
    await closeClients(clients);
    await stopChild(child);
  }
  return readings;
}

function perConn(a: Reading, b: Reading, key: keyof Reading): string {
  const n = b.conns - a.conns;
  return n <= 0 ? "–" : ((b[key] - a[key]) / n).toFixed(1);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      conns: { type: "string", default: "2000,10000" },
      servers: { type: "string", default: "ref,lanchat" },
      "snapshot-dir": { type: "string" },
    },
  });
  const stages = values.conns.split(",").map(Number).filter((n) => n > 0).sort((a, b) => a - b);
  const snapshotDir = values["snapshot-dir"];
  if (snapshotDir !== undefined) await Deno.mkdir(snapshotDir, { recursive: true });
  const tmp = await Deno.makeTempDir({ prefix: "lanchat-mem-" });
  const rows: string[] = [
    "| server | conns | RSS KiB/conn | heapUsed, no GC | heapTotal, no GC | RSS after GC | heapUsed | heapTotal | external |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  say(`loadavg at start ${await loadAverage()}`);
  try {
    for (const kind of values.servers.split(",")) {
      const r = await measure(kind, stages, tmp, snapshotDir);
      const base = r[0];
      if (base === undefined) continue;
      // From the base, and from the previous stage (the marginal cost, without start-up growth).
      for (const [i, s] of r.entries()) {
        const prev = r[i - 1];
        if (prev === undefined) continue;
        for (const from of prev === base ? [base] : [base, prev]) {
          const keys = [
            "rssKiB",
            "heapUsedNoGcKiB",
            "heapTotalNoGcKiB",
            "rssGcKiB",
            "heapUsedKiB",
            "heapTotalKiB",
            "externalKiB",
          ] as const;
          rows.push(
            `| ${kind} | ${from.conns} → ${s.conns} (${s.failed} failed) | ${
              keys.map((k) => perConn(from, s, k)).join(" | ")
            } |`,
          );
        }
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  say(`loadavg at end ${await loadAverage()}`);
  say(rows.join("\n"));
}

if (import.meta.main) await main();
