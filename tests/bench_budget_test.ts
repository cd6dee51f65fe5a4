/**
 * The bench's CPU budget (issue #7 item 4): CPU per delivered message and the
 * rate the machine's cores could carry at that cost, read at the right step.
 *
 * @module
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { cpuBudget, markdown, summarizeSteps } from "../bench/_report.ts";
import type { StepResult } from "../bench/_scenarios.ts";

function step(rate: number, delivered: number, server: number, gen: number, kept: boolean) {
  return {
    rate,
    sent: rate,
    offered: rate,
    deliveredPerSec: delivered,
    expectedPerSec: rate,
    fanout: 1,
    deliveredTotal: delivered,
    p50Ms: 1,
    p99Ms: 2,
    errors: 0,
    drops: 0,
    serverCpu: { process: server, main: server, worker: 0 },
    genCpu: { process: gen, main: gen, worker: 0 },
    machineBusy: 50,
    machineSteal: 0,
    genLoopLag: { maxMs: 1, stalls: 0 },
    serverLoopLag: null,
    keptUp: kept,
  } satisfies StepResult;
}

Deno.test("CPU per message: % of a core over deliveries per second, in µs", () => {
  // 116.3 % of a core at 15,581/s is 74.6 µs a message; 43.3 % is 27.8 µs.
  deepStrictEqual(cpuBudget(step(16_000, 15_581, 116.3, 43.3, true), 2), {
    cpuAtRate: 16_000,
    serverCpuUsPerMsg: 74.6,
    genCpuUsPerMsg: 27.8,
    cpuCeilingPerSec: 19_531, // 2 cores / 102.4 µs
  });
  strictEqual(cpuBudget(step(100, 0, 1, 1, true), 2), null);
  strictEqual(cpuBudget(undefined, 2), null);
});

Deno.test("the budget is read at the kept-up step that delivered most, not the last step", () => {
  const steps = [
    step(100, 100, 11, 6.7, true), // fixed costs dominate: 1,100 µs a message
    step(12_000, 11_989, 103.3, 41.6, true),
    step(16_000, 15_581, 116.3, 43.3, true),
    step(20_000, 15_331, 128.6, 50, false), // fell behind: its cost counts a backlog
  ];
  const summary = summarizeSteps(steps, 2);
  strictEqual(summary.sustainedDeliveredPerSec, 15_581);
  strictEqual(summary.cpuAtRate, 16_000);
  strictEqual(summary.serverCpuUsPerMsg, 74.6);
  strictEqual(summary.cores, 2);
  // Nothing kept up: no budget, and the summary still has its other figures.
  const none = summarizeSteps([step(100, 10, 5, 5, false)], 2);
  strictEqual(none.sustainedDeliveredPerSec, 0);
  ok(!("cpuCeilingPerSec" in none));
});

Deno.test("the report's table has the budget rows and says how they were read", () => {
  const line = (server: "lanchat" | "ref", ceiling: number) => ({
    server,
    scenario: "1to1",
    conns: 1000,
    cores: 2,
    serverCpuUsPerMsg: 10,
    genCpuUsPerMsg: 5,
    cpuCeilingPerSec: ceiling,
  });
  const text = markdown([line("lanchat", 19_493), line("ref", 38_685)], "cmd", "0.5");
  ok(text.includes("| 1to1 @1000 | cpuCeilingPerSec | 19493 | 38685 | 0.50 |"), text);
  ok(text.includes("| 1to1 @1000 | serverCpuUsPerMsg | 10 | 10 | 1.00 |"), text);
  ok(text.includes("the rate 2 cores could carry at that cost"), text);
  ok(!markdown([{ server: "ref", scenario: "storm" }], "cmd", "0.5").includes("cores could"));
});
