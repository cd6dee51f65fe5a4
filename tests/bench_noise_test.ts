/**
 * The bench's noise readings (issue #7): how late the generator's loop ran
 * in a step, the host's steal from `/proc/stat`, and the report line that
 * puts them beside the light-load p99.
 */

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { LoopLagMeter, STALL_MS } from "../bench/_loop_lag.ts";
import { machineBusyPercent, machineStealPercent, parseMachineTicks } from "../bench/_procfs.ts";
import { markdown, type ResultLine } from "../bench/_report.ts";
import { lagBetween, parseServerLoopLag } from "../bench/_server_lag.ts";
import { parseServerEnv } from "../bench/_settings.ts";

Deno.test("the loop-lag meter counts lateness beyond the interval, from the second tick on", () => {
  const meter = new LoopLagMeter(2);
  deepStrictEqual(meter.read(), { maxMs: 0, stalls: 0 });
  meter.tick(1000); // the first tick only starts the count
  deepStrictEqual(meter.read(), { maxMs: 0, stalls: 0 });
  // Halves and quarters: exact in binary, so "exactly a stall" is exact.
  meter.tick(1002.5); // 0.5 ms late
  meter.tick(1004.5); // on time
  deepStrictEqual(meter.read(), { maxMs: 0.5, stalls: 0 });
  meter.tick(1004.5 + 2 + STALL_MS); // exactly a stall
  meter.tick(1011.5 + 2 + 12.25); // the worst
  meter.tick(1025.75 + 2 + 4.75); // late, not a stall
  deepStrictEqual(meter.read(), { maxMs: 12.25, stalls: 2 });
});

Deno.test("steal is read from /proc/stat's cpu line and is part of the busy share", () => {
  // user nice system idle iowait irq softirq steal guest guest_nice
  const before = parseMachineTicks(
    "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n",
  );
  const after = parseMachineTicks(
    "cpu  200 0 100 1500 100 0 0 100 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n",
  );
  deepStrictEqual(before, { busy: 150, steal: 0, total: 1000 });
  deepStrictEqual(after, { busy: 400, steal: 100, total: 2000 });
  strictEqual(machineBusyPercent(before, after), 25);
  strictEqual(machineStealPercent(before, after), 10);
  // A kernel without a steal column reads as no steal; no time passed reads as 0, not NaN.
  const old = parseMachineTicks("cpu  1 2 3 4 5 6 7\n");
  strictEqual(old.steal, 0);
  strictEqual(machineStealPercent(old, old), 0);
});

Deno.test("the report names the light step's steal, generator stalls and lanchat's own loop lag", () => {
  const line = (server: "lanchat" | "ref", steal: number, lag: number, stalls: number) =>
    ({
      server,
      scenario: "1to1",
      conns: 1000,
      lightP99Ms: 4,
      lightMachineSteal: steal,
      lightGenLagMaxMs: lag,
      lightGenStalls: stalls,
      lightServerLoopLag: server === "ref" ? null : { readings: 100, over5Ms: 2 },
    }) satisfies ResultLine;
  const text = markdown([line("ref", 0.5, 1.2, 0), line("lanchat", 7.1, 23.4, 3)], "cmd", "0.5");
  ok(
    text.endsWith(
      `Light 1:1 step's noise: lanchat: steal 7.1 %, generator loop late by up to 23.4 ms ` +
        `(3 stalls ≥ ${STALL_MS} ms), its own loop over 5 ms late in 2 of 100 readings; ` +
        `ref: steal 0.5 %, generator loop late by up to 1.2 ms (0 stalls ≥ ${STALL_MS} ms).`,
    ),
    text,
  );
  // Without a 1:1 run there is nothing to say.
  ok(!markdown([{ server: "ref", scenario: "storm" }], "cmd", "0.5").includes("noise"));
});

Deno.test("lanchat's loop lag is read from its metrics page: readings and those over 5 ms", () => {
  const page = [
    "# TYPE lanchat_event_loop_lag_seconds histogram",
    'lanchat_event_loop_lag_seconds_bucket{le="0.001"} 90',
    'lanchat_event_loop_lag_seconds_bucket{le="0.0025"} 95',
    'lanchat_event_loop_lag_seconds_bucket{le="0.005"} 97',
    'lanchat_event_loop_lag_seconds_bucket{le="+Inf"} 100',
    "lanchat_event_loop_lag_seconds_sum 0.42",
    "lanchat_event_loop_lag_seconds_count 100",
    "lanchat_store_seconds_count 7",
  ].join("\n");
  const before = parseServerLoopLag(page);
  deepStrictEqual(before, { readings: 100, over5Ms: 3 });
  const after = parseServerLoopLag(
    page.replace("_count 100", "_count 150").replace('{le="0.005"} 97', '{le="0.005"} 145'),
  );
  deepStrictEqual(lagBetween(before, after), { readings: 50, over5Ms: 2 });
  // A page without the series (an older server, or not lanchat) is an error, not zeros.
  throws(() => parseServerLoopLag("lanchat_store_seconds_count 7\n"), /lanchat_event_loop_lag/);
});

Deno.test("--server-env takes NAME=value pairs for the servers and refuses anything else by name", () => {
  deepStrictEqual(parseServerEnv(""), {});
  deepStrictEqual(parseServerEnv("MALLOC_ARENA_MAX=2,X_1="), { MALLOC_ARENA_MAX: "2", X_1: "" });
  throws(() => parseServerEnv("lower=1"), /NAME=value pairs, not lower=1/);
  throws(() => parseServerEnv("NOEQUALS"), /not NOEQUALS/);
});
