/**
 * Build a release folder for Linux and Windows users (`deno task release`).
 *
 * Where the Deno runtime download (denort) is reachable, `deno compile` makes
 * `lanchat` (Linux x86_64) and `lanchat.exe` (Windows x86_64) with `static/`
 * and `templates/` embedded and the scoped permissions baked in. Where it is
 * not (or with `--fallback`), the folder holds a `deno bundle` of the server
 * (`server.js`) with `static/`, `templates/` and start scripts (`start.sh`,
 * `start.cmd`) that run it with the same scoped permissions; the target
 * machine then needs Deno (or Node's `npx`, which fetches `deno` from npm).
 *
 * Usage: deno task release [--out DIR] [--fallback] [--allow-net-extra HOSTS]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { ENV_NAMES } from "../lib/config.ts";

const ROOT = resolve(import.meta.dirname ?? ".", "..");

/** Hosts every node may reach or bind: the listener, loopback, loopback broadcast. */
export const BASE_NET = ["0.0.0.0", "127.0.0.1", "127.255.255.255"] as const;

/**
 * The environment names a release may read: the `--allow-env` list of the
 * `start` task in deno.json (the settings plus what the pg and Redis drivers
 * read). Throws when that list misses a setting of `ENV_NAMES`.
 */
export async function releaseEnv(): Promise<string[]> {
  const json = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const start = String(json?.tasks?.start ?? "");
  const names = start.match(/--allow-env=([A-Z0-9_,]+)/)?.[1]?.split(",") ?? [];
  const missing = ENV_NAMES.filter((n) => !names.includes(n));
  if (missing.length > 0) {
    throw new Error(`The start task in deno.json does not allow ${missing.join(", ")}`);
  }
  return names;
}

/**
 * The `--v8-flags=…` of the `start` task in `root`'s deno.json (its
 * young-generation cap, docs/config.md): a release, and lanchat under the
 * bench, run with the runtime settings the task does.
 */
export function startTaskV8Flags(root: string = ROOT): string[] {
  // Synchronous: test helpers build their command lines without awaiting.
  const json = JSON.parse(Deno.readTextFileSync(join(root, "deno.json")));
  return v8FlagsOf(String(json?.tasks?.start ?? ""));
}

/** The `--v8-flags=…` words of a `deno run` command line, in order. */
export function v8FlagsOf(command: string): string[] {
  return command.split(/\s+/).filter((word) => word.startsWith("--v8-flags="));
}

/** The scoped runtime flags of a release, relative to the release folder. */
export function runtimeFlags(
  env: readonly string[],
  extraNet: readonly string[] = [],
  v8Flags: readonly string[] = [],
): string[] {
  return [
    ...v8Flags,
    "--unstable-net",
    `--allow-net=${[...BASE_NET, ...extraNet].join(",")}`,
    "--allow-read=./static,./templates,./data,./lib",
    "--allow-write=./data",
    `--allow-env=${env.join(",")}`,
  ];
}

/** The SQLite append worker's module, loaded by path from main.ts (lib/store_append_worker.ts). */
const APPEND_WORKER = "lib/_sqlite_append_worker.ts";

const TARGETS = [
  { target: "x86_64-unknown-linux-gnu", output: "lanchat" },
  { target: "x86_64-pc-windows-msvc", output: "lanchat.exe" },
] as const;

async function run(args: string[]): Promise<{ ok: boolean; stderr: string }> {
  const out = await new Deno.Command("deno", {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "inherit",
    stderr: "piped",
  }).output();
  return { ok: out.success, stderr: new TextDecoder().decode(out.stderr) };
}

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    const src = join(from, e.name);
    const dst = join(to, e.name);
    if (e.isDirectory) await copyDir(src, dst);
    else if (e.isFile) await Deno.copyFile(src, dst);
  }
}

async function tryCompile(out: string, extraNet: readonly string[]): Promise<string | undefined> {
  const env = await releaseEnv();
  const v8Flags = startTaskV8Flags();
  for (const { target, output } of TARGETS) {
    const r = await run([
      "compile",
      "--target",
      target,
      "--include",
      "static",
      "--include",
      "templates",
      "--include",
      APPEND_WORKER,
      ...runtimeFlags(env, extraNet, v8Flags),
      "--output",
      join(out, output),
      "main.ts",
    ]);
    if (!r.ok) {
      const lines = r.stderr.split("\n").map((l) => l.trim());
      return lines.find((l) => /error sending request/.test(l)) ??
        lines.find((l) => /error/i.test(l)) ??
        "failed";
    }
  }
  return undefined;
}

async function bundle(out: string): Promise<void> {
  const r = await run([
    "bundle",
    "--quiet",
    "--platform",
    "deno",
    "-o",
    join(out, "server.js"),
    "main.ts",
  ]);
  if (!r.ok) throw new Error(`deno bundle failed: ${r.stderr}`);
  // The worker is its own module: bundled on its own, at the path server.js names.
  const worker = await run([
    "bundle",
    "--quiet",
    "--platform",
    "deno",
    "-o",
    join(out, APPEND_WORKER),
    APPEND_WORKER,
  ]);
  if (!worker.ok) throw new Error(`deno bundle of the append worker failed: ${worker.stderr}`);
  await copyDir(join(ROOT, "static"), join(out, "static"));
  await copyDir(join(ROOT, "templates"), join(out, "templates"));
}

/** Build the release into `out` (emptied first). Returns which kind was built. */
export async function buildRelease(
  out: string,
  options: { fallback?: boolean; extraNet?: readonly string[] } = {},
): Promise<"compiled" | "bundle"> {
  const extraNet = options.extraNet ?? [];
  await Deno.remove(out, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await Deno.mkdir(join(out, "data"), { recursive: true });
  let kind: "compiled" | "bundle" = "bundle";
  if (!options.fallback) {
    const why = await tryCompile(out, extraNet);
    if (why === undefined) kind = "compiled";
    else {
      emit(`deno compile is not available here (${why}); building the bundle instead`);
      for (const { output } of TARGETS) {
        await Deno.remove(join(out, output)).catch(() => {});
      }
    }
  }
  if (kind === "bundle") await bundle(out);
  await Deno.copyFile(join(ROOT, "deploy", "start.sh"), join(out, "start.sh"));
  await Deno.chmod(join(out, "start.sh"), 0o755);
  await Deno.copyFile(join(ROOT, "deploy", "windows", "start.cmd"), join(out, "start.cmd"));
  await copyDir(join(ROOT, "deploy", "nginx"), join(out, "deploy", "nginx"));
  await copyDir(join(ROOT, "deploy", "systemd"), join(out, "deploy", "systemd"));
  await Deno.copyFile(join(ROOT, "docs", "deploy.md"), join(out, "DEPLOY.md"));
  await Deno.copyFile(join(ROOT, "docs", "config.md"), join(out, "CONFIG.md"));
  return kind;
}

function emit(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string", default: "release" },
      fallback: { type: "boolean", default: false },
      "allow-net-extra": { type: "string", default: "" },
    },
  });
  const extraNet = values["allow-net-extra"].split(",").map((s) => s.trim()).filter((s) => s);
  const out = resolve(ROOT, values.out);
  const kind = await buildRelease(out, { fallback: values.fallback, extraNet });
  emit(`Built a ${kind === "compiled" ? "compiled" : "bundle"} release in ${out}`);
}
