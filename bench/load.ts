/**
 * The load generator (the `bench` task). For each server kind it makes a
 * fresh fixture in a temp folder, starts the server as a child process on
 * 127.0.0.1, and runs (c) a connect storm, (a) 1:1 at rising rates and
 * (b) group fan-out at rising rates, each until delivery falls behind. It
 * reports delivered msgs/s, latency p50/p99, failures, server RSS per
 * connection and both processes' CPU, appends one JSON line per scenario
 * and server to bench/results.jsonl, and prints a markdown summary with
 * lanchat/ref ratios. Everything is bounded in count and time. See
 * docs/bench.md.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { closeClients, openClients, Recorder } from "./_clients.ts";
import { createFixture, type Fixture, writeFixtureFiles } from "./fixture.ts";
import { createBenchDatabase } from "./_pg_database.ts";
import type { DbSetting } from "../lib/config.ts";
import { cpuPercent, cpuTimes, loadAverage, rssKiB } from "./_procfs.ts";
import { groupSender, oneToOneSender, runSteps, type StepResult } from "./_scenarios.ts";
import { markdown, type ResultLine, summarizeSteps } from "./_report.ts";
import { readSettings, type Settings } from "./_settings.ts";
import { type ServerKind, type ServerProcess, startServer } from "./_server_proc.ts";

const ROOT = resolve(import.meta.dirname ?? ".", "..");

function say(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Each client sends a heartbeat every this many ms, as the web client does. */
const HEARTBEAT_MS = 20_000;
/** How often a slice of the clients sends theirs. */
const HEARTBEAT_TICK_MS = 100;

/**
 * Heartbeats for every socket in `live`, each about every 20 s, spread over
 * the interval: a slice of the sockets every 100 ms. Why: real clients are
 * not in step, and one burst of a heartbeat per socket every 20 s put a
 * pause of its own into whichever step it fell in (a light-load p99 of
 * 10-48 ms in some steps, 2-4 ms in the rest). Returns the interval id.
 */
function spreadHeartbeats(live: Set<WebSocket>): ReturnType<typeof setInterval> {
  let turn: Iterator<WebSocket> = live.values();
  return setInterval(() => {
    let left = Math.ceil((live.size * HEARTBEAT_TICK_MS) / HEARTBEAT_MS);
    for (let tries = live.size; left > 0 && tries > 0; tries--) {
      let next = turn.next();
      if (next.done) {
        turn = live.values();
        next = turn.next();
        if (next.done) return;
      }
      if (next.value.readyState === WebSocket.OPEN) next.value.send('{"cmd":0}');
      left--;
    }
  }, HEARTBEAT_TICK_MS);
}

/** `kib` shared by `n` (0 for none), to 0.1 KiB. */
function perConnKiB(kib: number, n: number): number {
  return n === 0 ? 0 : Math.round((kib / n) * 10) / 10;
}

/** RSS every 5 s for `seconds` (nothing but the clients' heartbeats going on), KiB. */
async function idleRss(pid: number, seconds: number): Promise<number[]> {
  const series: number[] = [];
  for (let t = 5; t <= seconds; t += 5) {
    await delay(5000);
    series.push(await rssKiB(pid));
  }
  return series;
}

async function runServer(
  kind: ServerKind,
  s: Settings,
  fixture: Fixture,
  dataDir: string,
  base: Record<string, unknown>,
  db: string | undefined,
): Promise<ResultLine[]> {
  const lines: ResultLine[] = [];
  const budgetEnd = performance.now() + s.budgetSeconds * 1000;
  const profile = kind === "lanchat" && s.profileDir !== undefined ? s.profileDir : undefined;
  const server: ServerProcess = await startServer(kind, {
    root: ROOT,
    dataDir,
    cpuProfDir: profile,
    db,
    env: s.serverEnv,
  });
  const url = `ws://127.0.0.1:${server.port}/chat`;
  const head = { ...base, serverV8Flags: server.v8Flags };
  const rec = new Recorder();
  const live = new Set<WebSocket>();
  const heartbeat = spreadHeartbeats(live);
  try {
    await delay(500);
    const rssBase = await rssKiB(server.pid);
    say(`[${kind}] pid ${server.pid} port ${server.port} rss ${rssBase} KiB`);
    if (s.scenarios.has("storm") && s.storm > 0) {
      const server0 = await cpuTimes(server.pid);
      const gen0 = await cpuTimes(Deno.pid);
      const t0 = performance.now();
      const opened = await openClients(url, fixture.users.slice(0, s.storm), rec, {
        concurrency: s.stormConcurrency,
        timeoutMs: 120_000,
      });
      const wall = (performance.now() - t0) / 1000;
      for (const c of opened.clients) live.add(c.ws);
      await delay(2000);
      const rss = await rssKiB(server.pid);
      const n = opened.clients.length;
      const perConn = (kib: number) => perConnKiB(kib - rssBase, n);
      const serverCpu = cpuPercent(server0, await cpuTimes(server.pid), wall);
      const genCpu = cpuPercent(gen0, await cpuTimes(Deno.pid), wall);
      // The 2 s reading still holds the connects' garbage; an idle connection's cost is what
      // stays once the connections have sat idle (heartbeats only) for a while.
      const idleSeries = await idleRss(server.pid, s.stormIdleSeconds);
      const idlePerConn = idleSeries.map(perConn);
      const line: ResultLine = {
        ...head,
        server: kind,
        scenario: "storm",
        conns: s.storm,
        opened: n,
        failed: opened.failed,
        connectsPerSec: Math.round(n / opened.seconds),
        connectP50Ms: opened.p50Ms,
        connectP99Ms: opened.p99Ms,
        rssBaseKiB: rssBase,
        rssKiB: rss,
        rssPerConnKiB: perConn(rss),
        idleSeconds: s.stormIdleSeconds,
        rssIdleSeriesKiB: idleSeries,
        ...(idlePerConn.length === 0 ? {} : {
          rssPerConnIdleMinKiB: Math.min(...idlePerConn),
          rssPerConnIdleMeanKiB: perConnKiB(
            idlePerConn.reduce((a, b) => a + b),
            idlePerConn.length,
          ),
          rssPerConnIdleMaxKiB: Math.max(...idlePerConn),
        }),
        serverCpu,
        genCpu,
        loadavg: await loadAverage(),
      };
      lines.push(line);
      say(`[${kind}] storm ${JSON.stringify(line)}`);
      await closeClients(opened.clients);
      for (const c of opened.clients) live.delete(c.ws);
      await delay(1000);
    }
    const wantsTraffic = s.scenarios.has("1to1") || s.scenarios.has("group");
    if (wantsTraffic && performance.now() < budgetEnd) {
      // After a storm the heap keeps some of it; per-connection RSS is only clean with --storm 0.
      const rssBefore = await rssKiB(server.pid);
      const opened = await openClients(url, fixture.users.slice(0, s.conns), rec, {
        concurrency: 200,
      });
      for (const c of opened.clients) live.add(c.ws);
      await delay(1500); // Past the server's 1 s catch-up grace.
      const rssActive = await rssKiB(server.pid);
      const n = opened.clients.length;
      say(`[${kind}] ${n} clients open (${opened.failed} failed), rss ${rssActive} KiB`);
      const runId = crypto.randomUUID().slice(0, 8);
      const common = {
        ...head,
        server: kind,
        conns: s.conns,
        opened: n,
        failed: opened.failed,
        rssBaseKiB: rssBase,
        rssActiveKiB: rssActive,
        rssBeforeOpenKiB: rssBefore,
        rssPerConnKiB: perConnKiB(rssActive - rssBefore, n),
      };
      const scenarios: [string, () => Promise<StepResult[]>][] = [];
      if (s.scenarios.has("1to1")) {
        scenarios.push([
          "1to1",
          () =>
            runSteps(oneToOneSender(opened.clients, runId, partnerOf(fixture)), rec, {
              rates: s.rates1to1,
              stepSeconds: s.stepSeconds,
              firstStepSeconds: s.lightStepSeconds,
              serverPid: server.pid,
              metricsUrl: server.metricsUrl,
              budgetSeconds: Math.max(0, (budgetEnd - performance.now()) / 1000),
              onStep: (st) => say(`[${kind}] 1to1 ${JSON.stringify(st)}`),
            }),
        ]);
      }
      if (s.scenarios.has("group")) {
        const groupOf = new Map<number, number>();
        for (const g of fixture.groups) for (const m of g.members) groupOf.set(m, g.id);
        scenarios.push(["group", () =>
          runSteps(
            groupSender(opened.clients, `${runId}g`, { groupOf, fanout: s.groupSize - 1 }),
            rec,
            {
              rates: s.ratesGroup,
              stepSeconds: s.stepSeconds,
              firstStepSeconds: s.lightStepSeconds,
              serverPid: server.pid,
              metricsUrl: server.metricsUrl,
              budgetSeconds: Math.max(0, (budgetEnd - performance.now()) / 1000),
              onStep: (st) => say(`[${kind}] group ${JSON.stringify(st)}`),
            },
          )]);
      }
      for (const [name, run] of scenarios) {
        rec.errorSamples.length = 0;
        const steps = await run();
        lines.push({
          ...common,
          scenario: name,
          ...(name === "group" ? { groupSize: s.groupSize } : {}),
          ...summarizeSteps(steps, navigator.hardwareConcurrency),
          rssAfterKiB: await rssKiB(server.pid),
          errorSamples: rec.errorSamples.slice(),
          steps,
          loadavg: await loadAverage(),
        });
      }
      await closeClients(opened.clients);
    }
  } finally {
    clearInterval(heartbeat);
    const code = await server.stop();
    say(`[${kind}] stopped with ${code}`);
  }
  return lines;
}

/** Friend of each fixture user: users 2k and 2k+1 (by fixture order) are friends. */
function partnerOf(fixture: Fixture): Map<number, number> {
  const map = new Map<number, number>();
  for (let i = 0; i + 1 < fixture.users.length; i += 2) {
    const a = fixture.users[i]?.id ?? 0;
    const b = fixture.users[i + 1]?.id ?? 0;
    map.set(a, b);
    map.set(b, a);
  }
  return map;
}

async function main(): Promise<void> {
  const s = readSettings(Deno.args, ROOT);
  const command = `deno task bench ${Deno.args.join(" ")}`.trim();
  const tmp = await Deno.makeTempDir({ prefix: "lanchat-bench-" });
  const base = {
    at: new Date().toISOString(),
    label: s.label,
    command,
    deno: Deno.version.deno,
    loadavgStart: await loadAverage(),
    stepSeconds: s.stepSeconds,
    lightStepSeconds: Math.max(s.stepSeconds, s.lightStepSeconds),
    ...(Object.keys(s.serverEnv).length === 0 ? {} : { serverEnv: s.serverEnv }),
  };
  const all: ResultLine[] = [];
  let keep = s.profileDir !== undefined;
  try {
    for (const kind of s.servers) {
      const dataDir = join(tmp, kind);
      await Deno.mkdir(dataDir, { recursive: true });
      // Only lanchat has a store; ref reads the tokens of a SQLite fixture.
      await using pgDb = kind === "lanchat" && s.db !== undefined
        ? await createBenchDatabase(s.db)
        : undefined;
      const t0 = performance.now();
      const setting: DbSetting = pgDb === undefined
        ? { kind: "sqlite", path: join(dataDir, "chat.db") }
        : { kind: "postgres", url: pgDb.url };
      const fixture = await createFixture(setting, {
        users: Math.max(s.conns, s.storm),
        groupSize: s.groupSize,
      });
      await writeFixtureFiles(fixture, join(dataDir, "tokens.json"));
      const fixtureSeconds = Math.round(performance.now() - t0) / 1000;
      say(
        `[${kind}] fixture ${fixture.users.length} users in ${fixtureSeconds} s (${setting.kind})`,
      );
      const lines = await runServer(
        kind,
        s,
        fixture,
        dataDir,
        { ...base, fixtureSeconds, store: kind === "lanchat" ? setting.kind : "none" },
        pgDb?.url,
      );
      for (const line of lines) {
        await Deno.writeTextFile(s.results, JSON.stringify(line) + "\n", { append: true });
      }
      all.push(...lines);
    }
  } catch (error) {
    keep = true;
    throw error;
  } finally {
    if (!keep) await Deno.remove(tmp, { recursive: true });
    else say(`kept ${tmp} (server logs)`);
  }
  say("");
  say(markdown(all, command, await loadAverage()));
}

if (import.meta.main) await main();
