/**
 * Exactly-once, in-order delivery to one session on top of an at-most-once
 * bus. For each conversation the session keeps the range of seqs it has
 * sent; a live message that would leave a hole first pulls the missing ones
 * from the store, a repeat is skipped, and a catch-up frame replays what the
 * client lacks without sending anything twice.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { CatchUpParts } from "./catch_up_parts.ts";
import { HeldLive } from "./held_live.ts";
import type { DeliveryTarget } from "./dispatcher.ts";
import { ClientError } from "./errors.ts";
import { type AckFrame, CMD_ACK, CMD_CATCHUP_DONE, encode, messageFrame } from "./protocol.ts";
import { type Session, SETTLED } from "./session.ts";
import type { MessageStore, StoredMessage } from "./store.ts";

const logger = getLogger(["chat", "session_delivery"]);

/**
 * What delivery reads: messages and heads from the store, and the user's
 * groups. With `groupIds`, a group that had no messages at catch-up is
 * followed from seq 1 like a new 1:1.
 */
export type HistoryReader = Pick<MessageStore, "listMessages" | "lastSeqs"> & {
  /** The ids of the groups `userId` is in. */
  groupIds?(userId: number): Promise<readonly number[]>;
};

/** Tunables of {@linkcode SessionDelivery}. */
export interface SessionDeliveryOptions {
  /** Rows per store read during gap fill and catch-up. @default {200} */
  pageSize?: number;
  /**
   * Bytes of live messages kept while the gate is shut; past it only their
   * seqs, read from the store when it opens (`held_live.ts`). @default {65536}
   */
  holdBytes?: number;
}

/** Seqs `[low, next)` of one conversation have been sent (or the client has them). */
interface Cursor {
  low: number;
  next: number;
}

/** The delivery side of one session; the dispatcher's target for it. */
export class SessionDelivery implements DeliveryTarget {
  #session: Session;
  #store: HistoryReader;
  #pageSize: number;
  // The three containers below are made on first use: an idle session never
  // needs them (issue #7, memory per idle connection).
  #cursorMap: Map<string, Cursor> | undefined;
  get #cursors(): Map<string, Cursor> {
    return this.#cursorMap ??= new Map();
  }
  #chain: Promise<void> = SETTLED;
  #busy = 0;
  /**
   * Conversations the store listed at the last catch-up (their keys), and
   * the groups the user was in then (their keys after a "+"), in one Set:
   * every idle session keeps it (issue #7). Once set, a 1:1 conversation not
   * listed, or a group of the user's not listed, had no messages at
   * catch-up: it is followed from seq 1 (so even its first message, if the
   * bus lost it, is filled in). A group joined later is followed from its
   * seq at the join ({@linkcode joined}).
   */
  #known: ReadonlySet<string> | undefined;
  /**
   * Client ids this session has sent whose store write has not been acked
   * yet. A gap fill that meets one of them sends its ack, not the message:
   * the sender already shows it (the ack can lose a race with a later seq
   * from another node, which triggers the fill).
   */
  #pendingSet: Set<string> | undefined;
  get #pending(): Set<string> {
    return this.#pendingSet ??= new Set();
  }
  /** Pending client ids a gap fill has already acked; {@linkcode own} skips them. */
  #ackedEarlySet: Set<string> | undefined;
  get #ackedEarly(): Set<string> {
    return this.#ackedEarlySet ??= new Set();
  }
  /** A catch-up in parts whose last part is still to come. */
  #parts: CatchUpParts | undefined;
  /** Live messages held until the gate opens (see {@linkcode openGate}). */
  #gated: HeldLive | undefined;

  /** Deliver to `session`, filling gaps from `store`. */
  constructor(
    session: Session,
    store: HistoryReader,
    options: SessionDeliveryOptions = {},
  ) {
    this.#session = session;
    this.#store = store;
    this.#pageSize = options.pageSize ?? 200;
    this.#gated = new HeldLive(options.holdBytes ?? 65_536);
  }

  /** The session id. */
  get id(): string {
    return this.#session.id;
  }

  /** The session's user. */
  get userId(): number {
    return this.#session.userId;
  }

  /**
   * A live message from the dispatcher. Until {@linkcode openGate} is called
   * live messages are held, so a catch-up sent as the client's first frame
   * is replayed before them and the client sees each conversation strictly
   * in seq order. Held ones do not count against the send queue: past
   * `holdBytes` only their seqs are kept (see `held_live.ts`).
   */
  deliver(message: StoredMessage, text: string): void {
    if (this.#gated !== undefined) {
      this.#gated.add(message, text);
      return;
    }
    this.#accept(message, text, undefined);
  }

  /**
   * Start passing live messages, first the held ones in arrival order (or,
   * past `holdBytes`, what the store has of their seqs). Idempotent.
   */
  openGate(): void {
    const held = this.#gated;
    if (held === undefined) return;
    this.#gated = undefined;
    for (const { message, text } of held.frames) this.#accept(message, text, undefined);
    const ranges = held.ranges;
    if (ranges === undefined) return;
    void this.#enqueue(async () => {
      for (const [conv, { first, last }] of ranges) {
        if (this.#session.closed) return;
        await this.#refill(conv, first, last);
      }
    });
  }

  /**
   * Send held seqs `first..last` of `conv` that this session lacks, in
   * order, from the store: as if they had come live (a conversation not
   * followed yet is followed from `first`).
   */
  async #refill(conv: string, first: number, last: number): Promise<void> {
    let cursor = this.#cursor(conv);
    if (cursor === undefined) {
      cursor = { low: first, next: first };
      this.#cursors.set(conv, cursor);
    }
    if (first < cursor.low) {
      await this.#fill(conv, first, cursor.low);
      cursor.low = first;
    }
    if (cursor.next <= last) {
      const sent = await this.#fill(conv, cursor.next, last + 1, last);
      cursor.next = Math.max(cursor.next, sent + 1);
    }
  }

  /**
   * The session's own message was stored: send `ack` in its place (the
   * sender already shows the message) and count the seq as delivered. With
   * `published`, the ack waits for it (the bus handing the message to the
   * other nodes) and this session's later frames queue behind it, in order.
   */
  own(message: StoredMessage, ack: AckFrame, published?: Promise<void>): void {
    const text = encode(ack);
    if (published === undefined) {
      this.#ownNow(message, text, ack.cid);
      return;
    }
    // Hold the bytes against the queue limit like any queued frame; a session
    // over its limit is closing, and its client resends the unacked cid.
    if (!this.#session.hold(text.length)) return;
    void this.#enqueue(async () => {
      await published;
      this.#session.release(text.length);
      if (this.#ackedByFill(ack.cid)) return;
      // In this step, not queued again: frames that came meanwhile wait behind it.
      await this.#place(message, text, ack.cid);
    });
  }

  #ownNow(message: StoredMessage, text: string, cid: string): void {
    if (this.#ackedByFill(cid)) return;
    // The cid stays pending until its ack is really sent: a gap fill running
    // meanwhile must send this row as an ack too, not as a message.
    this.#accept(message, text, cid);
  }

  /** Whether a gap fill already sent the ack of `cid` (then the cid is done). */
  #ackedByFill(cid: string): boolean {
    if (!this.#ackedEarly.delete(cid)) return false;
    this.#pending.delete(cid);
    return true;
  }

  /** The session is about to store its message `cid`; see {@linkcode own}. */
  sending(cid: string): void {
    this.#pending.add(cid);
  }

  /** Storing `cid` failed: no ack will come. */
  forget(cid: string): void {
    this.#pending.delete(cid);
    this.#ackedEarly.delete(cid);
  }

  /**
   * Replay what the client lacks. `clientSeqs` is the client's last seq per
   * conversation; with `all`, every other conversation of the user counts as
   * seq 0. Only conversations the store lists for this user are replayed
   * (so a client cannot read others' conversations); a seq past the
   * conversation's last counts as its last. Ends with a catch-up-done frame
   * giving the seq each conversation now stands at for this session.
   *
   * With `more`, this is a part of a catch-up in several frames, not the
   * last: its conversations are replayed at once (`all` is ignored), the
   * store's view is kept for the next parts, and {@linkcode catchingUp}
   * stays true until the last part. Throws `ClientError` when the parts
   * name more conversations than {@linkcode CatchUpParts} allows (the
   * catch-up is then over).
   */
  async catchUp(
    clientSeqs: ReadonlyMap<string, number>,
    all: boolean,
    options: { readonly more?: boolean } = {},
  ): Promise<void> {
    const more = options.more ?? false;
    let refused: ClientError | undefined;
    await this.#enqueue(async () => {
      const parts = this.#parts ?? new CatchUpParts(
        await this.#store.lastSeqs(this.userId),
        await this.#store.groupIds?.(this.userId) ?? [],
      );
      this.#parts = undefined;
      try {
        parts.add(clientSeqs.size);
      } catch (error) {
        if (!(error instanceof ClientError)) throw error;
        refused = error;
        return;
      }
      if (more) this.#parts = parts;
      this.#known = parts.keys;
      const replayAll = all && !more;
      const done: Record<string, number> = {};
      for (const [conv, last] of parts.last) {
        const claimed = clientSeqs.get(conv) ?? (replayAll ? 0 : undefined);
        if (claimed === undefined) continue;
        // A seq past the stored last one (a client mixing up `id` and `seq`)
        // would make this session skip the next messages live: cap it.
        const have = Math.min(claimed, last);
        await this.#replay(conv, have, last);
        if (this.#session.closed) return;
        done[conv] = (this.#cursors.get(conv)?.next ?? have + 1) - 1;
      }
      this.#session.sendFrame({
        cmd: CMD_CATCHUP_DONE,
        seqs: done,
        ...(more ? { more: true } : {}),
      });
    });
    if (refused !== undefined) throw refused;
  }

  /** Whether a catch-up in parts has begun and its last part is still to come. */
  get catchingUp(): boolean {
    return this.#parts !== undefined;
  }

  /**
   * Give up waiting for the last part of a catch-up in parts (the client
   * sent none in time): a later part starts a new catch-up.
   */
  endParts(): void {
    this.#parts = undefined;
  }

  /**
   * The store holds `conv` up to `seq` (a node's head announcement): if this
   * session is behind, send the missing tail in order. Conversations the
   * session is not following (no catch-up, nothing received) are ignored;
   * so are announcements before the gate opens and before any catch-up (the
   * catch-up covers them). Between the parts of a catch-up in parts they
   * count: a conversation an early part replayed would otherwise miss a
   * message whose packet was lost until the next message or reconnect.
   */
  head(conv: string, seq: number): void {
    if (this.#gated !== undefined && this.#known === undefined) return;
    const cursor = this.#cursors.get(conv);
    if (cursor !== undefined && cursor.next > seq) return;
    if (cursor === undefined && !this.#isNew(conv)) return;
    void this.#enqueue(async () => {
      const current = this.#cursor(conv);
      if (current === undefined || current.next > seq) return;
      const sent = await this.#fill(conv, current.next, seq + 1, seq);
      current.next = Math.max(current.next, sent + 1);
    });
  }

  /**
   * The user just joined the group `conv`: follow it from after `seq`, the
   * group's newest seq before the join, sending at once what came since (a
   * message sent after the join may have reached this node before the news
   * of the join, and was not delivered here). Without `seq` (a node of an
   * older version announced the join), from its newest stored seq. Either
   * way a head announcement then repairs even the first message after the
   * join if the bus lost it. Before the catch-up there is nothing to do: it
   * lists the group.
   */
  joined(conv: string, seq?: number): void {
    if (this.#known === undefined || this.#cursors.has(conv)) return;
    void this.#enqueue(async () => {
      if (seq === undefined) {
        const [newest] = await this.#store.listMessages(conv, {
          beforeSeq: Number.MAX_SAFE_INTEGER,
          limit: 1,
        });
        if (this.#cursors.has(conv)) return;
        // Nothing sent yet: a queued message at or below that seq still goes out.
        const next = (newest?.seq ?? 0) + 1;
        this.#cursors.set(conv, { low: next, next });
        return;
      }
      if (this.#cursors.has(conv)) return;
      const cursor = { low: seq + 1, next: seq + 1 };
      this.#cursors.set(conv, cursor);
      const sent = await this.#fill(conv, cursor.next, Infinity);
      cursor.next = Math.max(cursor.next, sent + 1);
    });
  }

  /** Whether `conv` appeared after the last catch-up (so it starts at seq 1). */
  #isNew(conv: string): boolean {
    const known = this.#known;
    if (known === undefined || known.has(conv)) return false;
    return conv.startsWith("u:") || known.has(`+${conv}`);
  }

  /** The cursor of `conv`; a new conversation's starts at seq 1. */
  #cursor(conv: string): Cursor | undefined {
    let cursor = this.#cursors.get(conv);
    if (cursor === undefined && this.#isNew(conv)) {
      cursor = { low: 1, next: 1 };
      this.#cursors.set(conv, cursor);
    }
    return cursor;
  }

  /** Resolves when every queued delivery step has run. */
  idle(): Promise<void> {
    return this.#chain;
  }

  /**
   * Send `text`, the frame of `message`; `ackCid` marks it as the ack of the
   * session's own message, which goes out only if a gap fill did not already
   * send that ack.
   */
  #accept(message: StoredMessage, text: string, ackCid: string | undefined): void {
    if (this.#busy > 0) {
      // Keep order behind a running store read; count the bytes meanwhile.
      if (!this.#session.hold(text.length)) return;
      void this.#enqueue(async () => {
        this.#session.release(text.length);
        await this.#place(message, text, ackCid);
      });
      return;
    }
    const { conv, seq } = message;
    const cursor = this.#cursor(conv);
    if (cursor === undefined) {
      this.#cursors.set(conv, { low: seq, next: seq + 1 });
      this.#emit(text, ackCid);
    } else if (seq >= cursor.low && seq < cursor.next) {
      if (ackCid !== undefined) this.#emit(text, ackCid);
    } else if (seq === cursor.next) {
      cursor.next++;
      this.#emit(text, ackCid);
    } else {
      void this.#enqueue(() => this.#place(message, text, ackCid));
    }
  }

  /** Send `message` (or its ack) in order, pulling any hole from the store. */
  async #place(message: StoredMessage, text: string, ackCid: string | undefined) {
    const { conv, seq } = message;
    const cursor = this.#cursor(conv);
    if (cursor === undefined) {
      this.#cursors.set(conv, { low: seq, next: seq + 1 });
      this.#emit(text, ackCid);
      return;
    }
    if (seq >= cursor.low && seq < cursor.next) {
      if (ackCid !== undefined) this.#emit(text, ackCid);
      return;
    }
    if (seq >= cursor.next) {
      await this.#fill(conv, cursor.next, seq);
      cursor.next = seq + 1;
      this.#emit(text, ackCid);
      return;
    }
    // Older than anything sent yet: send it, then what lies between.
    this.#emit(text, ackCid);
    await this.#fill(conv, seq + 1, cursor.low);
    cursor.low = seq;
  }

  /** Send a frame; an own ack a gap fill already sent is dropped instead. */
  #emit(text: string, ackCid: string | undefined): void {
    if (ackCid !== undefined) {
      this.#pending.delete(ackCid);
      if (this.#ackedEarly.delete(ackCid)) return;
    }
    this.#session.send(text);
  }

  async #replay(conv: string, have: number, last: number): Promise<void> {
    const cursor = this.#cursors.get(conv);
    if (cursor === undefined) {
      const sent = await this.#fill(conv, have + 1, Infinity, last);
      this.#cursors.set(conv, { low: 1, next: Math.max(have, sent) + 1 });
      return;
    }
    if (have + 1 < cursor.low) await this.#fill(conv, have + 1, cursor.low);
    cursor.low = 1;
    cursor.next = Math.max(cursor.next, have + 1);
    if (cursor.next <= last) {
      const sent = await this.#fill(conv, cursor.next, Infinity, last);
      cursor.next = Math.max(cursor.next, sent + 1);
    }
  }

  /**
   * Send stored messages of `conv` with `from <= seq < to` in order, reading
   * at least up to `atLeast`. Returns the last seq sent (`from - 1` if none).
   */
  async #fill(
    conv: string,
    from: number,
    to: number,
    atLeast = 0,
  ): Promise<number> {
    let cursor = from;
    while (cursor < to && !this.#session.closed) {
      const limit = Math.min(this.#pageSize, to - cursor);
      const rows = await this.#store.listMessages(conv, {
        afterSeq: cursor - 1,
        limit,
      });
      const before = cursor;
      for (const row of rows) {
        if (row.seq < cursor || row.seq >= to) continue;
        // A page of large messages at once would pass the queue's limit: let it drain.
        const size = row.content.length + row.url.length + row.pic.length + 256;
        if (this.#session.crowded(size)) await this.#session.roomFor(size);
        if (!this.#session.send(this.#frameFor(row))) return cursor - 1;
        cursor = row.seq + 1;
      }
      if (rows.length < limit && cursor > atLeast) break;
      // Nothing read was in range (none left, or seqs missing up to `to`):
      // the same read again would loop for ever.
      if (cursor === before) break;
    }
    return cursor - 1;
  }

  /** The frame for a stored row: its ack if this session is still waiting for one. */
  #frameFor(row: StoredMessage): string {
    if (row.userid === this.userId && this.#pending.delete(row.cid)) {
      this.#ackedEarly.add(row.cid);
      return encode({
        cmd: CMD_ACK,
        cid: row.cid,
        seq: row.seq,
        id: row.id,
        conv: row.conv,
        ts: row.ts,
        dup: false,
      });
    }
    return encode(messageFrame(row));
  }

  #enqueue(step: () => Promise<void>): Promise<void> {
    this.#busy++;
    const run = this.#chain.then(step).catch((error) => {
      logger.error("Delivery to session {session} failed: {error}", {
        session: this.id,
        userId: this.userId,
        error,
      });
      this.#session.close("internal");
    }).finally(() => {
      // Nothing queued: keep the shared settled promise, not this one.
      if (--this.#busy === 0) this.#chain = SETTLED;
    });
    this.#chain = run;
    return run;
  }
}
