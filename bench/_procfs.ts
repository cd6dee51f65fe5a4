/**
 * Readings from Linux `/proc` for the bench: CPU time of a process, of its
 * main (JavaScript) thread and of its worker threads, the whole machine's
 * busy and stolen shares, resident memory, and the load average.
 *
 * Deno 2.9 refuses any read under `/proc` unless the process has
 * `--allow-all` (NotCapable, whatever `--allow-read` says), so the files are
 * read through `cat` and the thread list through `ls` in a subprocess: needs
 * `--allow-run=cat,ls`.
 *
 * @module
 */

/** Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** CPU seconds used so far: the whole process, its main thread, its JS workers. */
export interface CpuTimes {
  /** All threads (JS, GC helpers, I/O), seconds. */
  readonly process: number;
  /** The main thread (JavaScript, and `node:sqlite` without the append worker), seconds. */
  readonly main: number;
  /**
   * The busiest JavaScript worker thread (Deno names them `worker-<n>`; in
   * lanchat the SQLite append worker), seconds; 0 without one.
   */
  readonly worker: number;
}

/** The whole machine's CPU ticks so far, from the `cpu` line of `/proc/stat`. */
export interface MachineTicks {
  /** user, nice, system, irq, softirq and steal. */
  readonly busy: number;
  /** Ticks a virtual machine's CPUs wanted to run but the host ran something else. */
  readonly steal: number;
  readonly total: number;
}

/**
 * Read `paths` (under /proc) through `cat`; the texts in order. With
 * `vanishing`, a file that cannot be read (a thread that ended between the
 * listing and the read) gives "" instead of an error.
 */
async function readProc(paths: readonly string[], vanishing = false): Promise<string[]> {
  const out: string[] = [];
  for (const path of paths) {
    const { stdout, success } = await new Deno.Command("cat", {
      args: [path],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!success && !vanishing) throw new Error(`Cannot read ${path}`);
    out.push(success ? new TextDecoder().decode(stdout) : "");
  }
  return out;
}

function statSeconds(text: string): number {
  // Fields after the ")" that ends the command name; utime and stime are 14 and 15.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** The thread ids of process `pid` (`ls /proc/<pid>/task`). */
async function threadIds(pid: number): Promise<number[]> {
  const { stdout, success } = await new Deno.Command("ls", {
    args: [`/proc/${pid}/task`],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!success) throw new Error(`Cannot list the threads of ${pid}`);
  return new TextDecoder().decode(stdout).split(/\s+/).filter((t) => /^\d+$/.test(t)).map(Number);
}

/** CPU seconds of process `pid`, of its main thread and of its busiest JS worker thread. */
export async function cpuTimes(pid: number): Promise<CpuTimes> {
  const workers = (await threadIds(pid)).filter((tid) => tid !== pid);
  const [all = "", main = ""] = await readProc([
    `/proc/${pid}/stat`,
    `/proc/${pid}/task/${pid}/stat`,
  ]);
  // Runtime threads come and go (e.g. a pool thread ending): a vanished one is skipped.
  const threads = await readProc(workers.map((tid) => `/proc/${pid}/task/${tid}/stat`), true);
  const worker = threads
    .filter((text) => /\(worker-\d+\)/.test(text))
    .reduce((most, text) => Math.max(most, statSeconds(text)), 0);
  return { process: statSeconds(all), main: statSeconds(main), worker };
}

/** CPU use between two readings `wallSeconds` apart, % of one core. */
export interface CpuPercent {
  readonly process: number;
  readonly main: number;
  readonly worker: number;
}

/** Percent of one core used between two readings `wallSeconds` apart. */
export function cpuPercent(before: CpuTimes, after: CpuTimes, wallSeconds: number): CpuPercent {
  const pct = (a: number, b: number) => Math.round(((b - a) / wallSeconds) * 1000) / 10;
  return {
    process: pct(before.process, after.process),
    main: pct(before.main, after.main),
    worker: pct(before.worker, after.worker),
  };
}

/** The machine's busy and total ticks (all cores; iowait counts as idle). */
export async function machineTicks(): Promise<MachineTicks> {
  const [text = ""] = await readProc(["/proc/stat"]);
  return parseMachineTicks(text);
}

/** {@linkcode MachineTicks} from the text of `/proc/stat` (its `cpu` line). */
export function parseMachineTicks(text: string): MachineTicks {
  const line = text.split("\n").find((l) => l.startsWith("cpu ")) ?? "";
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] =
    line.trim().split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, steal, total: busy + idle + iowait };
}

/** Percent of the whole machine (every core) busy between two readings. */
export function machineBusyPercent(before: MachineTicks, after: MachineTicks): number {
  return share(after.busy - before.busy, after.total - before.total);
}

/**
 * Percent of the whole machine's time stolen by the host between two
 * readings (part of {@linkcode machineBusyPercent}): on a shared virtual
 * machine, time in which every thread of the bench may have stood still.
 */
export function machineStealPercent(before: MachineTicks, after: MachineTicks): number {
  return share(after.steal - before.steal, after.total - before.total);
}

function share(part: number, total: number): number {
  return total <= 0 ? 0 : Math.round((part / total) * 1000) / 10;
}

/** Resident set size of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`). */
export async function rssKiB(pid: number): Promise<number> {
  const [status = ""] = await readProc([`/proc/${pid}/status`]);
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match === null ? 0 : Number(match[1]);
}

/**
 * How many file descriptors process `pid` holds open (`ls /proc/<pid>/fd`):
 * sockets, files, pipes. Needs `--allow-run=ls`.
 */
export async function openFds(pid: number): Promise<number> {
  const { stdout, success } = await new Deno.Command("ls", {
    args: [`/proc/${pid}/fd`],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!success) throw new Error(`Cannot list the open files of ${pid}`);
  return new TextDecoder().decode(stdout).split(/\s+/).filter((t) => /^\d+$/.test(t)).length;
}

/** The three load averages and the runnable/total counts of `/proc/loadavg`. */
export async function loadAverage(): Promise<string> {
  const [text = ""] = await readProc(["/proc/loadavg"]);
  return text.trim();
}
