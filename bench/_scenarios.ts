/**
 * The bench scenarios over an open set of clients: a rate stepper shared by
 * (a) 1:1 and (b) group fan-out, rising until delivery falls behind. Every
 * step is bounded in messages and seconds, and stops by itself.
 *
 * @module
 */

import { type BenchClient, percentile, type Recorder } from "./_clients.ts";
import {
  type CpuPercent,
  cpuPercent,
  cpuTimes,
  machineBusyPercent,
  machineStealPercent,
  machineTicks,
} from "./_procfs.ts";
import { type LoopLag, LoopLagMeter } from "./_loop_lag.ts";
import { lagBetween, readServerLoopLag, type ServerLoopLag } from "./_server_lag.ts";

/** One rate step's figures. */
export interface StepResult {
  /** Offered chat frames per second. */
  readonly rate: number;
  /** Frames actually sent (the rest found every client's window full). */
  readonly sent: number;
  readonly offered: number;
  /** Deliveries received during the send window, per second. */
  readonly deliveredPerSec: number;
  /** Deliveries expected per second at this rate. */
  readonly expectedPerSec: number;
  /** Deliveries per frame. */
  readonly fanout: number;
  /** Deliveries of this step's frames, counted until 2 s after the window. */
  readonly deliveredTotal: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly drops: number;
  /** Server and generator CPU, % of one core (process / main thread / busiest JS worker). */
  readonly serverCpu: CpuPercent;
  readonly genCpu: CpuPercent;
  /** The whole machine's busy share over the step, % of all cores. */
  readonly machineBusy: number;
  /** The part of it the host stole from this virtual machine, % of all cores. */
  readonly machineSteal: number;
  /** How late the generator's send loop ran (`_loop_lag.ts`): its own pauses are in the latencies. */
  readonly genLoopLag: LoopLag;
  /** lanchat's own loop-lag readings over the step (`_server_lag.ts`); null for ref. */
  readonly serverLoopLag: ServerLoopLag | null;
  /** Whether delivery kept up (see {@linkcode keptUp}). */
  readonly keptUp: boolean;
}

/** What one chat frame of a step is. */
export interface Sender {
  /** Deliveries one frame should cause (1 for 1:1, members − 1 for a group). */
  readonly fanout: number;
  /** Send the next frame from some client; false if all windows are full. */
  sendNext(): boolean;
}

/** Options of {@linkcode runSteps}. */
export interface StepOptions {
  readonly rates: readonly number[];
  readonly stepSeconds: number;
  /** The first step lasts at least this long (its p99 is the light-load figure). @default {stepSeconds} */
  readonly firstStepSeconds?: number;
  /** Server pid for its CPU reading. */
  readonly serverPid: number;
  /** The server's `/metrics` with its loop lag (lanchat), if any. */
  readonly metricsUrl?: string | undefined;
  /** Stop stepping after this many seconds in all. */
  readonly budgetSeconds: number;
  /** Called after each step (progress output). */
  readonly onStep?: (step: StepResult) => void;
}

/** The send loop's tick, ms: a frame due while every window is full waits this long. */
const TICK_MS = 2;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Delivery kept up when at least 90 % of the offered frames went out (the
 * rest found every client's 32-frame window full), the deliveries counted
 * in the send window reached 85 % of the expected rate, at least 99 % of
 * what was sent arrived within 2 s after the window, nothing was refused
 * or dropped, and p99 stayed under 1 s.
 */
export function keptUp(s: Omit<StepResult, "keptUp">): boolean {
  return s.sent >= 0.9 * s.offered && s.deliveredPerSec >= 0.85 * s.expectedPerSec &&
    s.deliveredTotal >= 0.99 * s.sent * s.fanout && s.errors === 0 && s.drops === 0 &&
    s.p99Ms < 1000;
}

/** Run each rate for `stepSeconds` until one falls behind (that one is kept too). */
export async function runSteps(
  sender: Sender,
  rec: Recorder,
  options: StepOptions,
): Promise<StepResult[]> {
  const results: StepResult[] = [];
  const budgetEnd = performance.now() + options.budgetSeconds * 1000;
  for (const rate of options.rates) {
    if (performance.now() > budgetEnd) break;
    const seconds = results.length === 0
      ? Math.max(options.stepSeconds, options.firstStepSeconds ?? 0)
      : options.stepSeconds;
    const step = await runStep(sender, rec, rate, seconds, options);
    results.push(step);
    options.onStep?.(step);
    if (!step.keptUp) break;
  }
  await settle(rec);
  return results;
}

/**
 * Wait until the server has worked off the last (overloaded) step: no
 * delivery and no ack for 1 s, at most `maxMs`. Without this the backlog of
 * a saturated 1:1 run lands in the next scenario's first step.
 */
async function settle(rec: Recorder, maxMs = 30_000): Promise<void> {
  const end = performance.now() + maxMs;
  let seen = rec.delivered + rec.acks;
  let quietSince = performance.now();
  while (performance.now() < end && performance.now() - quietSince < 1000) {
    await delay(100);
    const now = rec.delivered + rec.acks;
    if (now !== seen) {
      seen = now;
      quietSince = performance.now();
    }
  }
}

async function runStep(
  sender: Sender,
  rec: Recorder,
  rate: number,
  seconds: number,
  options: StepOptions,
): Promise<StepResult> {
  const ms = seconds * 1000;
  const offered = Math.round(rate * seconds);
  rec.latencies = [];
  rec.recording = true;
  const errors0 = rec.errors;
  const drops0 = rec.drops;
  const server0 = await cpuTimes(options.serverPid);
  const gen0 = await cpuTimes(Deno.pid);
  const machine0 = await machineTicks();
  const lag0 = options.metricsUrl === undefined
    ? undefined
    : await readServerLoopLag(options.metricsUrl);
  const delivered0 = rec.delivered;
  const t0 = performance.now();
  const lag = new LoopLagMeter(TICK_MS);
  let sent = 0;
  let due = 0;
  for (;;) {
    lag.tick(performance.now());
    const elapsed = performance.now() - t0;
    if (elapsed >= ms) break;
    due = Math.min(offered, Math.floor((rate * elapsed) / 1000));
    while (sent < due) {
      if (!sender.sendNext()) {
        due = sent; // Every window is full: retried on the next tick.
        break;
      }
      sent++;
    }
    await delay(TICK_MS);
  }
  const wall = (performance.now() - t0) / 1000;
  const delivered = rec.delivered - delivered0;
  const [server1, gen1, machine1, lag1] = await Promise.all([
    cpuTimes(options.serverPid),
    cpuTimes(Deno.pid),
    machineTicks(),
    options.metricsUrl === undefined ? undefined : readServerLoopLag(options.metricsUrl),
  ]);
  const server = cpuPercent(server0, server1, wall);
  const gen = cpuPercent(gen0, gen1, wall);
  // Let in-flight frames land (bounded) so the next step starts clean.
  const drainEnd = performance.now() + 2000;
  while (performance.now() < drainEnd && rec.delivered - delivered0 < sent * sender.fanout) {
    await delay(20);
  }
  rec.recording = false;
  const lat = rec.latencies.sort((a, b) => a - b);
  const partial = {
    rate,
    sent,
    offered,
    deliveredPerSec: Math.round(delivered / wall),
    expectedPerSec: Math.round(rate * sender.fanout),
    fanout: sender.fanout,
    deliveredTotal: rec.delivered - delivered0,
    p50Ms: percentile(lat, 0.5),
    p99Ms: percentile(lat, 0.99),
    errors: rec.errors - errors0,
    drops: rec.drops - drops0,
    serverCpu: server,
    genCpu: gen,
    machineBusy: machineBusyPercent(machine0, machine1),
    machineSteal: machineStealPercent(machine0, machine1),
    genLoopLag: lag.read(),
    serverLoopLag: lag0 === undefined || lag1 === undefined ? null : lagBetween(lag0, lag1),
  };
  rec.latencies = [];
  return { ...partial, keptUp: keptUp(partial) };
}

/**
 * 1:1: every client whose friend (`partnerOf`, from the fixture: users 2k
 * and 2k+1) is connected sends to that friend, in turn.
 */
export function oneToOneSender(
  clients: readonly BenchClient[],
  runId: string,
  partnerOf: ReadonlyMap<number, number>,
): Sender {
  const online = new Set(clients.map((c) => c.user.id));
  const senders = clients.filter((c) => online.has(partnerOf.get(c.user.id) ?? 0));
  return roundRobin(senders, runId, {
    cmd: 10,
    fanout: 1,
    dst: (c) => partnerOf.get(c.user.id) ?? 0,
  });
}

/** Group: every client sends to its own group (consecutive users, `groupOf`). */
export function groupSender(
  clients: readonly BenchClient[],
  runId: string,
  options: { groupOf: Map<number, number>; fanout: number },
): Sender {
  const senders = clients.filter((c) => options.groupOf.has(c.user.id));
  return roundRobin(senders, runId, {
    cmd: 11,
    fanout: options.fanout,
    dst: (c) => options.groupOf.get(c.user.id) ?? 0,
  });
}

function roundRobin(
  senders: readonly BenchClient[],
  runId: string,
  how: { cmd: 10 | 11; fanout: number; dst: (c: BenchClient) => number },
): Sender {
  let next = 0;
  let count = 0;
  return {
    fanout: how.fanout,
    sendNext(): boolean {
      for (let tries = 0; tries < senders.length; tries++) {
        const c = senders[next];
        next = (next + 1) % senders.length;
        if (c !== undefined && c.sendChat(how.cmd, how.dst(c), `${runId}-${count}`)) {
          count++;
          return true;
        }
      }
      return false;
    },
  };
}
