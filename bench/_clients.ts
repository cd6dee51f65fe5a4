/**
 * The load generator's websocket clients: open many (bounded in flight and
 * in time), send the catch-up frame first as docs/protocol.md asks, count
 * what comes back and take latency samples from the send timestamp carried
 * in each message's `content` (`"@<performance.now()>"`).
 *
 * @module
 */

import type { FixtureUser } from "./fixture.ts";

/** Unacked chat frames a client keeps in flight (docs/protocol.md: about 32). */
export const WINDOW = 32;

/** Counters shared by every client of a pool. */
export class Recorder {
  /** Chat messages received (cmd 10/11 carrying a bench timestamp). */
  delivered = 0;
  /** Acks received (cmd 20). */
  acks = 0;
  /** Error frames received (cmd 21). */
  errors = 0;
  /** Sockets that closed while the pool still wanted them. */
  drops = 0;
  /** First few error frames, for the report. */
  readonly errorSamples: string[] = [];
  /** Latency samples (ms) while recording. */
  latencies: number[] = [];
  recording = false;
}

/** One bench client socket. */
export class BenchClient {
  readonly user: FixtureUser;
  readonly ws: WebSocket;
  /** Sent chat frames not yet acked (or refused). */
  inflight = 0;
  /** Resolves true once cmd 31 arrived, false if the socket failed first. */
  readonly ready: Promise<boolean>;
  #closing = false;

  constructor(url: string, user: FixtureUser, rec: Recorder) {
    this.user = user;
    this.ws = new WebSocket(`${url}?token=${encodeURIComponent(user.token)}`);
    let settle: (ok: boolean) => void = () => {};
    this.ready = new Promise((resolve) => settle = resolve);
    this.ws.onopen = () => this.ws.send('{"cmd":30,"seqs":{},"all":true}');
    this.ws.onerror = () => settle(false);
    this.ws.onclose = () => {
      settle(false);
      if (!this.#closing) rec.drops++;
    };
    this.ws.onmessage = (e: MessageEvent) => {
      const s = e.data as string;
      const at = s.indexOf('"content":"@');
      if (at >= 0) {
        rec.delivered++;
        if (rec.recording) {
          rec.latencies.push(performance.now() - parseFloat(s.slice(at + 12, at + 40)));
        }
      } else if (s.includes('"cmd":20')) {
        rec.acks++;
        this.inflight--;
      } else if (s.includes('"cmd":31')) {
        settle(true);
      } else if (s.includes('"cmd":21')) {
        rec.errors++;
        if (s.includes('"cid"')) this.inflight--;
        if (rec.errorSamples.length < 5) rec.errorSamples.push(s.slice(0, 200));
      }
    };
  }

  /** Send one chat frame with a timestamp; false when the window is full. */
  sendChat(cmd: 10 | 11, dstid: number, cid: string): boolean {
    if (this.inflight >= WINDOW || this.ws.readyState !== WebSocket.OPEN) return false;
    this.inflight++;
    this.ws.send(
      `{"cmd":${cmd},"dstid":${dstid},"media":1,"content":"@${performance.now()}","cid":"${cid}"}`,
    );
    return true;
  }

  /** Close on purpose; resolves when closed (or after `timeoutMs`). */
  close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.ws.addEventListener("close", () => {
        clearTimeout(timer);
        resolve();
      });
      try {
        this.ws.close(1000);
      } catch {
        clearTimeout(timer);
        resolve();
      }
    });
  }
}

/** How an {@linkcode openClients} run went. */
export interface OpenResult {
  readonly clients: BenchClient[];
  readonly failed: number;
  readonly seconds: number;
  /** Open → catch-up done, ms. */
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** Options of {@linkcode openClients}. */
export interface OpenOptions {
  /** Connections being set up at once. @default {500} */
  readonly concurrency?: number;
  /** Give up on the ones not ready by then. @default {60000} */
  readonly timeoutMs?: number;
}

/** Open one client per user (the real `/chat` route), at most `concurrency` at once. */
export async function openClients(
  url: string,
  users: readonly FixtureUser[],
  rec: Recorder,
  options: OpenOptions = {},
): Promise<OpenResult> {
  const concurrency = options.concurrency ?? 500;
  const deadline = performance.now() + (options.timeoutMs ?? 60_000);
  const started = performance.now();
  const clients: BenchClient[] = [];
  const times: number[] = [];
  let failed = 0;
  let next = 0;
  async function lane(): Promise<void> {
    while (next < users.length && performance.now() < deadline) {
      const user = users[next++];
      if (user === undefined) break;
      const t0 = performance.now();
      const client = new BenchClient(url, user, rec);
      const left = Math.max(1, deadline - t0);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const ok = await Promise.race([
        client.ready,
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), left)),
      ]);
      clearTimeout(timer);
      if (ok) {
        times.push(performance.now() - t0);
        clients.push(client);
      } else {
        failed++;
        await client.close(1000);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, users.length) }, lane));
  failed += users.length - next;
  times.sort((a, b) => a - b);
  return {
    clients,
    failed,
    seconds: (performance.now() - started) / 1000,
    p50Ms: percentile(times, 0.5),
    p99Ms: percentile(times, 0.99),
  };
}

/** Close every client, bounded by `timeoutMs` each (in parallel). */
export async function closeClients(clients: readonly BenchClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.close(5000)));
}

/** The `p` quantile (0–1) of an ascending array; 0 when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return Math.round((sorted[i] ?? 0) * 100) / 100;
}
