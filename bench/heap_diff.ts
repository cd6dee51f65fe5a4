/**
 * What a heap grew by between two V8 heap snapshots (as written by
 * `bench/idle_memory.ts --snapshot-dir`): objects grouped by node type and
 * constructor / function name (strings and numbers grouped by type), the
 * count and self size added, per connection when `--per <n>` is given.
 *
 * ```
 * deno run --allow-read=/tmp bench/heap_diff.ts /tmp/heap/lanchat-0.heapsnapshot /tmp/heap/lanchat-2000.heapsnapshot --per 2000
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

/** The parts of a .heapsnapshot file this reads. */
interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Count and self bytes per group. */
export type Groups = Map<string, { count: number; bytes: number }>;

/** Group the nodes of `snap` by type and name (strings, numbers and code by type only). */
export function groupNodes(snap: HeapSnapshot): Groups {
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const iType = fields.indexOf("type");
  const iName = fields.indexOf("name");
  const iSize = fields.indexOf("self_size");
  const out: Groups = new Map();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType] ?? 0] ?? "?";
    const byTypeOnly = type === "string" || type === "concatenated string" ||
      type === "sliced string" || type === "number" || type === "code" || type === "bigint";
    const name = byTypeOnly ? "" : (snap.strings[snap.nodes[i + iName] ?? 0] ?? "?").slice(0, 60);
    const key = `${type} ${name}`;
    const g = out.get(key) ?? { count: 0, bytes: 0 };
    g.count++;
    g.bytes += snap.nodes[i + iSize] ?? 0;
    out.set(key, g);
  }
  return out;
}

/** Groups that grew from `before` to `after`, largest byte growth first. */
export function growth(before: Groups, after: Groups): [string, number, number][] {
  const rows: [string, number, number][] = [];
  for (const [key, a] of after) {
    const b = before.get(key) ?? { count: 0, bytes: 0 };
    if (a.bytes !== b.bytes || a.count !== b.count) {
      rows.push([key, a.count - b.count, a.bytes - b.bytes]);
    }
  }
  return rows.sort((x, y) => y[2] - x[2]);
}

async function load(path: string): Promise<Groups> {
  return groupNodes(JSON.parse(await Deno.readTextFile(path)) as HeapSnapshot);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { per: { type: "string", default: "1" }, top: { type: "string", default: "40" } },
  });
  const [a, b] = positionals;
  if (a === undefined || b === undefined) {
    throw new TypeError("Usage: heap_diff.ts <before.heapsnapshot> <after.heapsnapshot> [--per n]");
  }
  const per = Number(values.per);
  const rows = growth(await load(a), await load(b));
  const total = rows.reduce((s, r) => s + r[2], 0);
  const lines = [`total self bytes added ${total} (${(total / per).toFixed(0)} per unit)`, ""];
  lines.push("  count/unit  bytes/unit  group");
  for (const [key, count, bytes] of rows.slice(0, Number(values.top))) {
    lines.push(
      `${(count / per).toFixed(2).padStart(12)} ${(bytes / per).toFixed(1).padStart(11)}  ${key}`,
    );
  }
  Deno.stdout.writeSync(new TextEncoder().encode(lines.join("\n") + "\n"));
}
