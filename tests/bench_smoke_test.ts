/**
 * The bench still runs (issue #7): `bench/load.ts` under the `bench` task's
 * own permissions, at a tiny scale, against both servers, writes a JSON
 * line per scenario with every figure docs/bench.md names. It measures
 * nothing here: performance is judged by `deno task bench` itself.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "./_node_helpers.ts";
import { startTaskV8Flags } from "../deploy/release.ts";

const PG_URL = Deno.env.get("CHAT_TEST_PG_URL");

/** The `bench` task's words after `deno`, up to and including bench/load.ts. */
async function benchTaskArgs(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const words = String(config.tasks.bench).split(/\s+/);
  strictEqual(words[0], "deno");
  strictEqual(words.at(-1), "bench/load.ts");
  return words.slice(1);
}

type Line = Record<string, unknown> & { server: string; scenario: string; steps?: Step[] };
type Step = Record<string, unknown> & {
  keptUp: boolean;
  deliveredTotal: number;
  serverCpu: { process: number; main: number; worker: number };
  machineBusy: number;
  machineSteal: number;
  genLoopLag: { maxMs: number; stalls: number };
  serverLoopLag: { readings: number; over5Ms: number } | null;
};

async function runBench(extra: string[]): Promise<Line[]> {
  const results = await Deno.makeTempFile({ prefix: "lanchat_bench_smoke_", suffix: ".jsonl" });
  try {
    const out = await new Deno.Command("deno", {
      args: [
        ...await benchTaskArgs(),
        ...[
          "--conns",
          "20",
          "--group-size",
          "10",
          "--step-seconds",
          "2",
          "--light-step-seconds",
          "3",
        ],
        ...["--rates-1to1", "50", "--rates-group", "10", "--results", results, "--label", "smoke"],
        ...extra,
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    ok(out.success, text);
    ok(text.includes("| scenario | figure |"), text);
    const raw = await Deno.readTextFile(results);
    return raw.trim().split("\n").map((l) => JSON.parse(l));
  } finally {
    await Deno.remove(results);
  }
}

function checkTraffic(line: Line): void {
  const steps = line.steps ?? [];
  strictEqual(steps.length, 1, JSON.stringify(line));
  const [step] = steps;
  ok(step!.keptUp && step!.deliveredTotal > 0, JSON.stringify(step));
  // The first (light) step runs --light-step-seconds, not --step-seconds: 3 s at 50 frames/s.
  strictEqual(line["lightStepSeconds"], 3);
  strictEqual(step!.offered, line.scenario === "1to1" ? 150 : 30, JSON.stringify(step));
  ok(step!.machineBusy >= 0 && step!.machineBusy <= 100, JSON.stringify(step));
  ok(step!.machineSteal >= 0 && step!.machineSteal <= step!.machineBusy, JSON.stringify(step));
  const lag = step!.genLoopLag;
  ok(Number.isFinite(lag.maxMs) && lag.maxMs >= 0 && lag.stalls >= 0, JSON.stringify(step));
  deepStrictEqual(
    [line["lightMachineSteal"], line["lightGenLagMaxMs"], line["lightGenStalls"]],
    [step!.machineSteal, lag.maxMs, lag.stalls],
  );
  // lanchat's own loop lag, from its metrics listener (about 10 readings a second); ref has none.
  const own = step!.serverLoopLag;
  if (line.server === "ref") {
    strictEqual(own, null);
  } else {
    ok(own !== null && own.readings >= 10 && own.over5Ms >= 0, JSON.stringify(step));
  }
  deepStrictEqual(line["lightServerLoopLag"], own);
  // Readings in 10 ms ticks: at this load only their presence is checked, not their size.
  const cpu = step!.serverCpu;
  ok(
    [cpu.process, cpu.main, cpu.worker].every((v) => Number.isFinite(v) && v >= 0),
    JSON.stringify(step),
  );
  strictEqual(line["limit"], "not reached (rates list ended)");
  ok(typeof line["lightP99Ms"] === "number", JSON.stringify(line));
}

Deno.test("the bench runs the storm, 1:1 and group against both servers and reports each", async () => {
  const lines = await runBench(["--storm", "30", "--storm-idle-seconds", "10"]);
  deepStrictEqual(
    lines.map((l) => `${l.server}/${l.scenario}`),
    ["ref/storm", "ref/1to1", "ref/group", "lanchat/storm", "lanchat/1to1", "lanchat/group"],
  );
  for (const line of lines) {
    if (line.scenario === "storm") {
      deepStrictEqual([line["opened"], line["failed"]], [30, 0]);
      // Present and finite; not its sign: 30 connections cost less than a GC can free meanwhile
      // (CI saw -40.9 KiB once the young generation was capped).
      ok(Number.isFinite(line["rssPerConnKiB"]), JSON.stringify(line));
      // Two idle readings (every 5 s for 10 s), and their min ≤ mean ≤ max.
      strictEqual((line["rssIdleSeriesKiB"] as number[]).length, 2, JSON.stringify(line));
      const [min, mean, max] = ["Min", "Mean", "Max"].map((k) => line[`rssPerConnIdle${k}KiB`]);
      ok(
        typeof min === "number" && typeof mean === "number" && typeof max === "number" &&
          min <= mean && mean <= max,
        JSON.stringify(line),
      );
    } else {
      checkTraffic(line);
    }
  }
  strictEqual(lines.find((l) => l.server === "lanchat")?.["store"], "sqlite");
  // lanchat runs with the start task's V8 flags (its young-generation cap), ref with none.
  const v8 = startTaskV8Flags(ROOT);
  ok(v8.length > 0, "the start task passes --v8-flags");
  for (const line of lines) {
    deepStrictEqual(line["serverV8Flags"], line.server === "lanchat" ? v8 : [], line.server);
  }
});

Deno.test({
  name: "the bench runs lanchat on a throwaway Postgres database with --db",
  ignore: PG_URL === undefined,
  async fn() {
    const lines = await runBench([
      ...["--servers", "lanchat", "--storm", "0", "--scenarios", "1to1", "--db", PG_URL ?? ""],
    ]);
    strictEqual(lines.length, 1);
    strictEqual(lines[0]!["store"], "postgres");
    checkTraffic(lines[0]!);
  },
});
