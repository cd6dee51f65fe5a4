/**
 * Summarize a V8 `.cpuprofile` (from `deno run --cpu-prof`): self time by
 * function and by file, as percentages of the profile. Deno-only, no deps.
 *
 * ```
 * deno run --allow-read=/tmp bench/prof_summary.ts /tmp/prof/x.cpuprofile [top=25]
 * ```
 *
 * @module
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives, shortened: lib/x.ts, npm:kysely, ext:…, or a V8 pseudo-frame. */
export function fileOf(url: string, fn: string): string {
  if (url === "") return fn.startsWith("(") ? fn : "(native)";
  const npm = /\/npm\/registry\.npmjs\.org\/([^/]+(?:\/[^/]+)?)\//.exec(url) ??
    /node_modules\/\.deno\/([^/]+)\//.exec(url);
  if (npm !== null) return `npm:${(npm[1] ?? "").replace(/@[\d.]+$/, "")}`;
  const local = /\/work\/main\/(.*)$/.exec(url);
  if (local !== null) return local[1] ?? url;
  return url.replace(/^ext:/, "ext:").split("/").slice(0, 2).join("/");
}

/** Self microseconds per key, sorted descending. */
export function selfTimes(
  profile: Profile,
  keyOf: (node: ProfileNode) => string,
): [string, number][] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    if (node === undefined) return;
    const key = keyOf(node);
    totals.set(key, (totals.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return [...totals].sort((a, b) => b[1] - a[1]);
}

/**
 * Inclusive microseconds per key: a sample counts once for every distinct
 * key on its stack (so "lib/store_kysely.ts" covers the Kysely and SQLite
 * work it called), sorted descending.
 */
export function inclusiveTimes(
  profile: Profile,
  keyOf: (node: ProfileNode) => string,
): [string, number][] {
  const parent = new Map<number, ProfileNode>();
  for (const n of profile.nodes) {
    for (const c of n.children ?? []) parent.set(c, n);
  }
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const keys = new Set<string>();
    for (let n = byId.get(id); n !== undefined; n = parent.get(n.id)) keys.add(keyOf(n));
    for (const key of keys) totals.set(key, (totals.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return [...totals].sort((a, b) => b[1] - a[1]);
}

function table(rows: [string, number][], total: number, top: number): string {
  return rows.slice(0, top).map(([k, us]) =>
    `${(us / total * 100).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`
  ).join("\n");
}

if (import.meta.main) {
  const [path, topRaw] = Deno.args;
  if (path === undefined) throw new TypeError("Usage: prof_summary.ts <file.cpuprofile> [top]");
  const top = Number(topRaw ?? 25);
  const profile = JSON.parse(await Deno.readTextFile(path)) as Profile;
  const total = profile.timeDeltas.reduce((a, b) => a + b, 0);
  const idle = selfTimes(profile, (n) => n.callFrame.functionName === "(idle)" ? "idle" : "busy");
  const byFile = selfTimes(profile, (n) => fileOf(n.callFrame.url, n.callFrame.functionName));
  const byFn = selfTimes(
    profile,
    (n) =>
      `${n.callFrame.functionName || "(anonymous)"}  ${
        fileOf(n.callFrame.url, n.callFrame.functionName)
      }:${n.callFrame.lineNumber + 1}`,
  );
  const out = [
    `profile ${(total / 1e6).toFixed(1)} s; ${table(idle, total, 2).replace(/\n/g, "; ")}`,
    "",
    "self time by file:",
    table(byFile, total, top),
    "",
    "self time by function:",
    table(byFn, total, top),
    "",
    "inclusive time by file (a sample counts for every file on its stack):",
    table(
      inclusiveTimes(profile, (n) => fileOf(n.callFrame.url, n.callFrame.functionName)),
      total,
      top,
    ),
  ];
  await Deno.stdout.write(new TextEncoder().encode(out.join("\n") + "\n"));
}
