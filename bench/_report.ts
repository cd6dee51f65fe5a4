/**
 * What the load generator reports: the JSON line per scenario and server,
 * which limit a step hit, a scenario's summary of its rate steps, and the
 * markdown table with lanchat/ref ratios.
 *
 * @module
 */

import type { StepResult } from "./_scenarios.ts";
import { STALL_MS } from "./_loop_lag.ts";
import type { ServerLoopLag } from "./_server_lag.ts";
import type { ServerKind } from "./_server_proc.ts";

/** One JSON line of results.jsonl. */
export type ResultLine = Record<string, unknown> & { server: ServerKind; scenario: string };

/**
 * Which limit a saturated step hit: a thread at ≥ 90 % of a core (the
 * generator's, the server's main thread, the server's SQLite append worker),
 * else the machine's cores ≥ 80 % busy (server, generator and the kernel's
 * network and disk work together), else latency alone.
 */
export function limitOf(step: StepResult | undefined): string {
  if (step === undefined) return "none";
  if (step.keptUp) return "not reached (rates list ended)";
  if (step.genCpu.main >= 90) return "generator CPU";
  if (step.serverCpu.main >= 90) return "server CPU (main thread)";
  if (step.serverCpu.worker >= 90) return "server store thread (SQLite append worker)";
  // Four busy threads (two per process) on two cores queue before the cores reach 100 %.
  if (step.machineBusy >= 80) {
    return "machine CPU (cores ≥ 80 % busy: server threads, generator, kernel)";
  }
  return "no thread or core saturated (latency)";
}

/**
 * CPU per delivered message at `step` (server and generator, µs), and the
 * rate `cores` could carry at that cost with nothing else running. Server
 * and generator share the cores, so this ceiling bounds what any rate step
 * can reach: a target above it needs a cheaper message (or generator), not
 * a faster loop. Null without deliveries.
 */
export function cpuBudget(step: StepResult | undefined, cores: number) {
  if (step === undefined || step.deliveredPerSec <= 0) return null;
  const perMessageUs = (percent: number) => Math.round(percent * 1e5 / step.deliveredPerSec) / 10; // % of a core → µs, one decimal
  const serverCpuUsPerMsg = perMessageUs(step.serverCpu.process);
  const genCpuUsPerMsg = perMessageUs(step.genCpu.process);
  const total = serverCpuUsPerMsg + genCpuUsPerMsg;
  return {
    cpuAtRate: step.rate,
    serverCpuUsPerMsg,
    genCpuUsPerMsg,
    cpuCeilingPerSec: total > 0 ? Math.round(cores * 1e6 / total) : null,
  };
}

/**
 * A scenario's figures from its rate steps (light load = the first step);
 * the CPU budget is read at the kept-up step that delivered most, where
 * fixed costs (timers, metrics) weigh least per message.
 */
export function summarizeSteps(steps: StepResult[], cores: number) {
  const ok = steps.filter((s) => s.keptUp);
  const bestStep = ok.reduce<StepResult | undefined>(
    (m, s) => m === undefined || s.deliveredPerSec > m.deliveredPerSec ? s : m,
    undefined,
  );
  const best = bestStep?.deliveredPerSec ?? 0;
  const peak = steps.reduce((m, s) => Math.max(m, s.deliveredPerSec), 0);
  return {
    sustainedDeliveredPerSec: best,
    peakDeliveredPerSec: peak,
    lightP50Ms: steps[0]?.p50Ms ?? 0,
    lightP99Ms: steps[0]?.p99Ms ?? 0,
    lightRate: steps[0]?.rate ?? 0,
    // What else could have made the light p99: the host, the generator's loop, lanchat's own loop.
    lightMachineSteal: steps[0]?.machineSteal ?? 0,
    lightGenLagMaxMs: steps[0]?.genLoopLag.maxMs ?? 0,
    lightGenStalls: steps[0]?.genLoopLag.stalls ?? 0,
    lightServerLoopLag: steps[0]?.serverLoopLag ?? null,
    limit: limitOf(steps.at(-1)),
    cores,
    ...cpuBudget(bestStep, cores),
  };
}

function ratio(a: unknown, b: unknown): string {
  return typeof a === "number" && typeof b === "number" && b > 0 ? (a / b).toFixed(2) : "–";
}

/** The summary table of one run: lanchat and ref side by side, with their ratio. */
export function markdown(lines: ResultLine[], command: string, loadavg: string): string {
  const get = (server: string, scenario: string) =>
    lines.find((l) => l.server === server && l.scenario === scenario);
  const out = [
    `Command: \`${command}\` — loadavg at end ${loadavg}`,
    "",
    "| scenario | figure | lanchat | ref | lanchat/ref | limit (lanchat) |",
    "| --- | --- | ---: | ---: | ---: | --- |",
  ];
  for (const sc of ["1to1", "group"]) {
    const l = get("lanchat", sc);
    const r = get("ref", sc);
    if (l === undefined && r === undefined) continue;
    const figures = [
      "sustainedDeliveredPerSec",
      "peakDeliveredPerSec",
      "lightP99Ms",
      "serverCpuUsPerMsg",
      "genCpuUsPerMsg",
      "cpuCeilingPerSec",
    ];
    for (const f of figures) {
      out.push(
        `| ${sc} @${(l ?? r)?.["conns"]} | ${f} | ${l?.[f] ?? "–"} | ${r?.[f] ?? "–"} | ${
          ratio(l?.[f], r?.[f])
        } | ${l?.["limit"] ?? "–"} |`,
      );
    }
  }
  const l = get("lanchat", "storm");
  const r = get("ref", "storm");
  if (l !== undefined || r !== undefined) {
    const fields = ["opened", "failed", "connectsPerSec", "connectP99Ms", "rssPerConnKiB"];
    const idle = ["rssPerConnIdleMinKiB", "rssPerConnIdleMeanKiB", "rssPerConnIdleMaxKiB"];
    for (const f of [...fields, ...idle]) {
      out.push(
        `| storm @${(l ?? r)?.["conns"]} | ${f} | ${l?.[f] ?? "–"} | ${r?.[f] ?? "–"} | ${
          ratio(l?.[f], r?.[f])
        } | |`,
      );
    }
  }
  const noise = ["lanchat", "ref"].flatMap((server) => {
    const line = get(server, "1to1");
    if (line === undefined) return [];
    const own = line["lightServerLoopLag"] as ServerLoopLag | null | undefined;
    const ownText = own === null || own === undefined
      ? ""
      : `, its own loop over 5 ms late in ${own.over5Ms} of ${own.readings} readings`;
    return [
      `${server}: steal ${line["lightMachineSteal"]} %, generator loop late by up to ${
        line["lightGenLagMaxMs"]
      } ms (${line["lightGenStalls"]} stalls ≥ ${STALL_MS} ms)${ownText}`,
    ];
  });
  if (noise.length > 0) out.push("", `Light 1:1 step's noise: ${noise.join("; ")}.`);
  const cores = lines.find((line) => typeof line["cpuCeilingPerSec"] === "number")?.["cores"];
  if (cores !== undefined) {
    out.push(
      "",
      `CPU per message (µs, process CPU over deliveries) is read at the kept-up step that ` +
        `delivered most; cpuCeilingPerSec is the rate ${cores} cores could carry at that cost ` +
        `(server and generator together).`,
    );
  }
  return out.join("\n");
}
