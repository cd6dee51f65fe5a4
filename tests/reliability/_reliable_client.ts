/**
 * A chat client that does what docs/protocol.md asks of a client, and
 * counts: it catches up on (re)connect with its last seq per conversation,
 * keeps at most {@linkcode WINDOW} unacked frames, resends unacked frames
 * with the same `cid` after a reconnect, and logs every seq it is given
 * (message or ack) per conversation so a test can assert zero missing,
 * zero duplicated and zero reordered as counts.
 *
 * @module
 */

import type { FixtureUser } from "../../bench/fixture.ts";

/** Unacked chat frames a reliable client keeps in flight. */
export const WINDOW = 16;

/** One outgoing chat frame. */
export interface Outgoing {
  readonly cmd: 10 | 11;
  readonly dstid: number;
  readonly cid: string;
  /** Text to send; the cid when absent. */
  readonly content?: string;
}

/** Counts of a tally. */
export interface Tally {
  /** Seqs 1..expected never seen. */
  missing: number;
  /** Seqs seen more than once (messages and first acks; `dup:true` acks are retries, not copies). */
  duplicated: number;
  /** Frames whose seq was below one seen before in the same conversation. */
  reordered: number;
  /** Frames seen in all. */
  frames: number;
  /** A few duplicated or reordered frames (`user conv#seq`), for the failure message. */
  samples: string[];
}

/** A reliable client of one user. */
export class ReliableClient {
  readonly user: FixtureUser;
  /** Seqs in arrival order, per conversation. */
  readonly log = new Map<string, number[]>();
  /** Sent, not yet acked, by cid (insertion order is send order). */
  readonly unacked = new Map<string, Outgoing>();
  /** Close codes seen, in order. */
  readonly closes: number[] = [];
  /** Acks that said `dup:true` (a resend of a stored cid). */
  dupAcks = 0;
  /** Seqs that came as acks (not `dup`), per conversation. */
  readonly acked = new Map<string, Set<number>>();
  /** Error frames received. */
  errors = 0;
  #ws: WebSocket | undefined;
  #queue: Outgoing[] = [];
  #ready = false;
  #wake: (() => void) | undefined;

  constructor(user: FixtureUser) {
    this.user = user;
  }

  /** Whether the socket is open and caught up. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Frames queued or in flight. */
  get pending(): number {
    return this.#queue.length + this.unacked.size;
  }

  /** The highest seq seen per conversation. */
  lastSeqs(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [conv, seqs] of this.log) out[conv] = Math.max(0, ...seqs);
    return out;
  }

  /**
   * Open `url` (ws://…/chat), catch up, then resend every unacked frame with
   * its cid. Resolves true once caught up, false if the socket failed.
   */
  connect(url: string, timeoutMs = 30_000): Promise<boolean> {
    this.#ready = false;
    const ws = new WebSocket(`${url}?token=${encodeURIComponent(this.user.token)}`);
    this.#ws = ws;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        resolve(false);
        try {
          ws.close();
        } catch { /* closed */ }
      }, timeoutMs);
      ws.onopen = () => ws.send(JSON.stringify({ cmd: 30, seqs: this.lastSeqs(), all: true }));
      ws.onerror = () => {};
      ws.onclose = (e) => {
        clearTimeout(timer);
        resolve(false);
        // A socket this client already replaced says nothing about the new one.
        if (this.#ws !== ws) return;
        this.#ready = false;
        this.closes.push(e.code);
        resolve(false);
      };
      ws.onmessage = (e) => {
        if (this.#ws !== ws) return;
        const f = JSON.parse(String(e.data)) as Record<string, unknown>;
        const cmd = f["cmd"];
        if (cmd === 10 || cmd === 11) {
          this.#record(String(f["conv"]), Number(f["seq"]));
        } else if (cmd === 20) {
          const cid = String(f["cid"]);
          this.unacked.delete(cid);
          const conv = String(f["conv"]);
          const seq = Number(f["seq"]);
          // A dup ack confirms a resent frame: it may be the only word the sender
          // gets of its message (the first ack went to a closed socket), so it
          // counts once, like the web client's outbox does.
          if (f["dup"] === true) this.dupAcks++;
          if (f["dup"] !== true || !this.log.get(conv)?.includes(seq)) {
            this.#record(conv, seq);
            this.acked.set(conv, (this.acked.get(conv) ?? new Set()).add(seq));
          }
          this.#pump();
        } else if (cmd === 31) {
          clearTimeout(timer);
          this.#ready = true;
          for (const out of this.unacked.values()) this.#write(out);
          this.#pump();
          resolve(true);
        } else if (cmd === 21) {
          this.errors++;
        }
      };
    });
  }

  #record(conv: string, seq: number): void {
    let seqs = this.log.get(conv);
    if (seqs === undefined) this.log.set(conv, seqs = []);
    seqs.push(seq);
  }

  #write(out: Outgoing): void {
    const content = out.content ?? out.cid;
    this.#ws?.send(
      JSON.stringify({ cmd: out.cmd, dstid: out.dstid, media: 1, content, cid: out.cid }),
    );
  }

  #pump(): void {
    while (this.#ready && this.unacked.size < WINDOW && this.#queue.length > 0) {
      const out = this.#queue.shift()!;
      this.unacked.set(out.cid, out);
      this.#write(out);
    }
    if (this.pending === 0) this.#wake?.();
  }

  /** Queue frames; they go out as the window allows (and survive reconnects). */
  enqueue(frames: readonly Outgoing[]): void {
    this.#queue.push(...frames);
    this.#pump();
  }

  /** Resolves when nothing is queued or unacked. */
  drained(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#wake = () => {
        this.#wake = undefined;
        resolve();
      };
    });
  }

  /** Drop the socket without a close handshake on our side's terms (code 4999 is ours). */
  abort(): void {
    this.#ready = false;
    const ws = this.#ws;
    this.#ws = undefined;
    try {
      ws?.close(4999, "Test reconnect");
    } catch { /* closed */ }
  }

  /** Close on purpose and wait for the close event. */
  close(): Promise<void> {
    const ws = this.#ws;
    if (ws === undefined || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 5000);
      ws.addEventListener("close", () => {
        clearTimeout(timer);
        resolve();
      });
      ws.close(1000);
    });
  }

  /** Tally this client's log against the expected message count per conversation. */
  tally(expected: ReadonlyMap<string, number>): Tally {
    const t: Tally = { missing: 0, duplicated: 0, reordered: 0, frames: 0, samples: [] };
    for (const [conv, n] of expected) {
      const seqs = this.log.get(conv) ?? [];
      const seen = new Set<number>();
      let max = 0;
      for (const s of seqs) {
        t.frames++;
        const bad = seen.has(s) ? "duplicated" : s < max ? "reordered" : undefined;
        if (bad !== undefined) {
          t[bad]++;
          const how = this.acked.get(conv)?.has(s) ? "acked" : "message";
          t.samples.push(`${bad} user ${this.user.id} ${conv}#${s} (${how})`);
        }
        seen.add(s);
        max = Math.max(max, s);
      }
      for (let s = 1; s <= n; s++) {
        if (seen.has(s)) continue;
        t.missing++;
        t.samples.push(`missing user ${this.user.id} ${conv}#${s} (saw up to ${max})`);
      }
    }
    // Conversations nobody expected are all extra.
    for (const [conv, seqs] of this.log) if (!expected.has(conv)) t.duplicated += seqs.length;
    return t;
  }
}

/** Sum the tallies of `clients`, each against its own expectations. */
export function tallyAll(
  clients: readonly ReliableClient[],
  expected: (c: ReliableClient) => ReadonlyMap<string, number>,
): Tally {
  const sum: Tally = { missing: 0, duplicated: 0, reordered: 0, frames: 0, samples: [] };
  for (const c of clients) {
    const t = c.tally(expected(c));
    sum.missing += t.missing;
    sum.duplicated += t.duplicated;
    sum.reordered += t.reordered;
    sum.frames += t.frames;
    sum.samples.push(...t.samples.slice(0, 5));
  }
  return sum;
}
