/**
 * The suite's traffic: fixture users in friend pairs (2k, 2k+1) and groups,
 * each user sending `direct` 1:1 messages to its partner and `group`
 * messages to its group, interleaved; plus what each client must end with
 * (the message count per conversation it takes part in).
 *
 * @module
 */

import type { Fixture } from "../../bench/fixture.ts";
import { type Outgoing, ReliableClient, type Tally, tallyAll } from "./_reliable_client.ts";

/** How much each user sends. */
export interface WorkloadOptions {
  /** 1:1 messages per user to its friend. */
  readonly direct: number;
  /** Group messages per user to its group (users outside a full group send none). */
  readonly group: number;
}

/** A planned run: clients, their frames, and each client's expected conversations. */
export interface Workload {
  readonly clients: ReliableClient[];
  readonly frames: Map<ReliableClient, Outgoing[]>;
  readonly expected: Map<ReliableClient, Map<string, number>>;
  /** Messages planned in all. */
  readonly total: number;
}

/** Plan the traffic of `fixture`'s first `users` users. */
export function planWorkload(fixture: Fixture, options: WorkloadOptions): Workload {
  const groupOf = new Map<number, { id: number; size: number }>();
  for (const g of fixture.groups) {
    for (const m of g.members) groupOf.set(m, { id: g.id, size: g.members.length });
  }
  const clients = fixture.users.map((u) => new ReliableClient(u));
  const frames = new Map<ReliableClient, Outgoing[]>();
  const expected = new Map<ReliableClient, Map<string, number>>();
  let total = 0;
  for (const [i, c] of clients.entries()) {
    const partner = fixture.users[i % 2 === 0 ? i + 1 : i - 1];
    const group = groupOf.get(c.user.id);
    const out: Outgoing[] = [];
    const exp = new Map<string, number>();
    if (partner !== undefined) {
      const lo = Math.min(c.user.id, partner.id);
      const hi = Math.max(c.user.id, partner.id);
      exp.set(`u:${lo}:${hi}`, 2 * options.direct);
    }
    if (group !== undefined) exp.set(`g:${group.id}`, group.size * options.group);
    for (let n = 0; n < Math.max(options.direct, options.group); n++) {
      if (partner !== undefined && n < options.direct) {
        out.push({ cmd: 10, dstid: partner.id, cid: `d${c.user.id}.${n}` });
      }
      if (group !== undefined && n < options.group) {
        out.push({ cmd: 11, dstid: group.id, cid: `g${c.user.id}.${n}` });
      }
    }
    total += out.length;
    frames.set(c, out);
    expected.set(c, exp);
  }
  return { clients, frames, expected, total };
}

/** Connect each client to `urlOf(index)`, 100 at a time; throws if any fails. */
export async function connectAll(
  clients: readonly ReliableClient[],
  urlOf: (i: number) => string,
): Promise<void> {
  for (let i = 0; i < clients.length; i += 100) {
    const ok = await Promise.all(
      clients.slice(i, i + 100).map((c, k) => c.connect(urlOf(i + k))),
    );
    const failed = ok.filter((x) => !x).length;
    if (failed > 0) throw new Error(`${failed} clients failed to connect`);
  }
}

/** Enqueue every planned frame and wait (up to `timeoutMs`) until all are acked. */
export async function sendAll(w: Workload, timeoutMs = 120_000): Promise<void> {
  for (const c of w.clients) c.enqueue(w.frames.get(c) ?? []);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const left = w.clients.reduce((n, c) => n + c.pending, 0);
      reject(new Error(`Still ${left} frames unacked after ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    await Promise.race([Promise.all(w.clients.map((c) => c.drained())), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Wait until every client holds every expected seq (or `timeoutMs`), then
 * a little longer so late duplicates would show; the tally of all clients.
 */
export async function settle(w: Workload, timeoutMs = 60_000): Promise<Tally> {
  const all = () => tallyAll(w.clients, (c) => w.expected.get(c) ?? new Map());
  const end = Date.now() + timeoutMs;
  while (all().missing > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
  await new Promise((r) => setTimeout(r, 1500));
  return all();
}
