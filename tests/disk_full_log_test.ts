/** DiskFullLog: one "disk is full" line per interval for a node, whichever path met it. */

import { deepStrictEqual } from "node:assert/strict";
import { DiskFullLog } from "../lib/disk_full_log.ts";
import { captureLogs } from "./_logs.ts";

Deno.test("DiskFullLog logs once per 10 s and counts the refusals it did not log", async () => {
  await using logs = await captureLogs();
  let now = 1_000_000;
  const log = new DiskFullLog({ now: () => now });
  const full = new Error("database or disk is full");
  log.report(full, "message append");
  now += 4_000;
  log.report(full, "POST /user/register");
  now += 5_999;
  log.report(full, "POST /attach/upload");
  now += 1;
  log.report(full, "message append");
  deepStrictEqual(
    logs.records.map((r) => [r.level, r.properties["what"], r.properties["unlogged"]]),
    [["error", "message append", 0], ["error", "message append", 2]],
  );
});
