/**
 * Readings from Linux `/proc` for the bench: CPU time of a process and of
 * its main (JavaScript) thread, resident memory, and the load average.
 *
 * Deno 2.9 refuses any read under `/proc` unless the process has
 * `--allow-all` (NotCapable, whatever `--allow-read` says), so the files are
 * read through `cat` in a subprocess: needs `--allow-run=cat`.
 *
 * @module
 */

/** Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** CPU seconds used so far: the whole process and its main thread. */
export interface CpuTimes {
  /** All threads (JS, GC helpers, I/O), seconds. */
  readonly process: number;
  /** The main thread (where JavaScript and `node:sqlite` run), seconds. */
  readonly main: number;
}

/** Read `paths` (under /proc) through `cat`; the texts in order. */
async function readProc(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const path of paths) {
    const { stdout, success } = await new Deno.Command("cat", {
      args: [path],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!success) throw new Error(`Cannot read ${path}`);
    out.push(new TextDecoder().decode(stdout));
  }
  return out;
}

function statSeconds(text: string): number {
  // Fields after the ")" that ends the command name; utime and stime are 14 and 15.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** CPU seconds of process `pid` and of its main thread. */
export async function cpuTimes(pid: number): Promise<CpuTimes> {
  const [all = "", main = ""] = await readProc([
    `/proc/${pid}/stat`,
    `/proc/${pid}/task/${pid}/stat`,
  ]);
  return { process: statSeconds(all), main: statSeconds(main) };
}

/** Percent of one core used between two readings `wallSeconds` apart. */
export function cpuPercent(
  before: CpuTimes,
  after: CpuTimes,
  wallSeconds: number,
): { process: number; main: number } {
  const pct = (a: number, b: number) => Math.round(((b - a) / wallSeconds) * 1000) / 10;
  return {
    process: pct(before.process, after.process),
    main: pct(before.main, after.main),
  };
}

/** Resident set size of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`). */
export async function rssKiB(pid: number): Promise<number> {
  const [status = ""] = await readProc([`/proc/${pid}/status`]);
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match === null ? 0 : Number(match[1]);
}

/** The three load averages and the runnable/total counts of `/proc/loadavg`. */
export async function loadAverage(): Promise<string> {
  const [text = ""] = await readProc(["/proc/loadavg"]);
  return text.trim();
}
