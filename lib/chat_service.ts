/**
 * The per-message flow: stamp the sender, check friendship or membership,
 * persist (the store assigns `seq` and dedups by `cid`), publish on the bus
 * (every node's subscriber hands it to its dispatcher), then ack the sender
 * once the bus has handed it to its transport. Also catch-up and history,
 * and the list of live sessions.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Bus, BusEnvelope } from "./bus.ts";
import { Dispatcher, type DispatcherStats } from "./dispatcher.ts";
import { ClientError } from "./errors.ts";
import {
  type AckFrame,
  type ChatFrame,
  CMD_ACK,
  CMD_CATCHUP,
  CMD_HISTORY,
  CMD_HISTORY_PAGE,
  CMD_SINGLE_MSG,
  type HistoryFrame,
  messageFrame,
  parseConv,
} from "./protocol.ts";
import {
  type Connection,
  Session,
  type SessionHandler,
  type SessionIdentity,
  type SessionOptions,
  SYSTEM_TIMERS,
  type Timers,
  type WorkFrame,
} from "./session.ts";
import { type HistoryReader, SessionDelivery } from "./session_delivery.ts";
import { DeadlineQueue } from "./deadline_queue.ts";
import { SendPermits } from "./send_permits.ts";
import { conversationKey, type Store, type StoredMessage } from "./store.ts";

const logger = getLogger(["chat", "chat_service"]);

/** The slice of the store the chat service uses. */
export type ChatStore = Pick<
  Store,
  | "findUser"
  | "areFriends"
  | "isMember"
  | "listGroups"
  | "listMembers"
  | "appendMessage"
  | "listMessages"
  | "lastSeqs"
>;

/** One page request of a conversation. */
export interface HistoryQuery {
  /** Conversation key, `u:<low>:<high>` or `g:<id>`. */
  readonly conv: string;
  /** Only seqs below this (newest page below it). */
  readonly before?: number | undefined;
  /** Only seqs above this (oldest page above it). */
  readonly after?: number | undefined;
  /** Page size. */
  readonly limit: number;
}

/** Dependencies and tunables of {@linkcode ChatService}. */
export interface ChatServiceOptions {
  readonly store: ChatStore;
  readonly bus: Bus;
  /** Whether 1:1 messages may go to non-friends. @default {false} */
  readonly allowStrangers?: boolean;
  /** Per-session limits and timers. @default {SESSION_DEFAULTS} */
  readonly session?: SessionOptions;
  /** Clock in epoch ms (message `ts`). @default {Date.now} */
  readonly now?: () => number;
  /** Makes session ids and missing cids. @default {crypto.randomUUID} */
  readonly newId?: () => string;
  /**
   * How long live messages wait for the client's first frame (ideally a
   * catch-up) after connect, so replay comes before them. @default {1000}
   */
  readonly catchUpGraceMs?: number;
  /**
   * How long live messages wait for the next part of a catch-up in parts
   * once a part is answered: a part the session refused (over the rate, a
   * bad frame) or a client that stopped sending parts must not keep them
   * held for good. @default {10000}
   */
  readonly catchUpPartsWaitMs?: number;
}

interface Entry {
  readonly session: Session;
  readonly delivery: SessionDelivery;
  /** Settles once the dispatcher has indexed the user's groups. */
  readonly ready: Promise<void>;
  /** Whether `ready` has settled (later frames skip awaiting it). */
  isReady: boolean;
  /** Opens the live gate if the client sends nothing (or no next catch-up part) in time. */
  graceTimer: unknown;
}

/** The realtime core of one node. */
export class ChatService implements SessionHandler {
  #store: ChatStore;
  #bus: Bus;
  #dispatcher: Dispatcher;
  #allowStrangers: boolean;
  #sessionOptions: SessionOptions;
  #now: () => number;
  #newId: () => string;
  #entries = new Map<string, Entry>();
  #unsubscribe: () => void;
  #timers: Timers;
  #graceMs: number;
  #partsWaitMs: number;
  /** Idle and login-recheck deadlines of every session: one timer, not two per socket. */
  #deadlines: DeadlineQueue;
  /** Granted friendships and memberships (see send_permits.ts). */
  #permits: SendPermits;
  /** What every session's delivery reads; one object for all of them. */
  #history: HistoryReader;

  /** Build the service and subscribe its dispatcher to `options.bus`. */
  constructor(options: ChatServiceOptions) {
    this.#store = options.store;
    this.#bus = options.bus;
    this.#dispatcher = new Dispatcher(options.store);
    this.#allowStrangers = options.allowStrangers ?? false;
    this.#sessionOptions = options.session ?? {};
    this.#now = options.now ?? Date.now;
    this.#newId = options.newId ?? (() => crypto.randomUUID());
    this.#timers = options.session?.timers ?? SYSTEM_TIMERS;
    this.#graceMs = options.catchUpGraceMs ?? 1000;
    this.#partsWaitMs = options.catchUpPartsWaitMs ?? 10_000;
    this.#deadlines = this.#sessionOptions.deadlines ?? new DeadlineQueue(this.#timers);
    this.#permits = new SendPermits(this.#store);
    const store = this.#store;
    const dispatcher = this.#dispatcher;
    this.#history = {
      listMessages: (conv, query) => store.listMessages(conv, query),
      lastSeqs: (userId) => store.lastSeqs(userId),
      // A session's frames (catch-up included) wait until the dispatcher has
      // loaded its user's groups: no second store read per connect for them.
      groupIds: (userId) => Promise.resolve(dispatcher.groupsOf(userId)),
    };
    this.#unsubscribe = this.#bus.subscribe((e) => this.#onEnvelope(e));
  }

  #onEnvelope(envelope: BusEnvelope): void {
    if (envelope.kind === "member") {
      this.#dispatcher.memberJoined(envelope.groupId, envelope.userId, envelope.seq);
    } else if (envelope.kind === "heads") {
      for (const { conv, seq } of envelope.heads) this.#dispatcher.head(conv, seq);
      if (envelope.repair === true) void this.#dispatcher.resyncGroups(groupIdsOf(envelope.heads));
    } else {
      this.#dispatcher.deliver(envelope.message, {
        exceptSession: envelope.exceptSession,
      });
    }
  }

  /**
   * Start a session for `userId` on an open connection. The caller feeds it
   * with `session.receive()` and `session.closedByPeer()`; `stillValid`
   * lets the session drop a login revoked while connected.
   */
  open(
    conn: Connection,
    userId: number,
    options: Pick<SessionIdentity, "stillValid"> = {},
  ): Session {
    const session = new Session(conn, {
      ...this.#sessionOptions,
      deadlines: this.#deadlines,
      ...options,
      id: this.#newId(),
      userId,
      handler: this,
    });
    const delivery = new SessionDelivery(session, this.#history);
    const ready = this.#dispatcher.add(delivery).catch((error) => {
      logger.error("Cannot load groups of user {userId}: {error}", {
        userId,
        error,
      });
      session.close("internal");
    });
    const entry: Entry = { session, delivery, ready, isReady: false, graceTimer: undefined };
    void ready.then(() => entry.isReady = true);
    entry.graceTimer = this.#timers.setTimeout(() => {
      entry.graceTimer = undefined;
      void ready.then(() => delivery.openGate());
    }, this.#graceMs);
    this.#entries.set(session.id, entry);
    logger.info("Session {session} of user {userId} opened", {
      session: session.id,
      userId,
    });
    return session;
  }

  /**
   * {@linkcode SessionHandler.onFrame}: handle one chat, catch-up or history
   * frame, then let live messages pass, unless a catch-up in parts still
   * waits for its last part.
   */
  async onFrame(session: Session, frame: WorkFrame): Promise<void> {
    const entry = this.#entries.get(session.id);
    if (entry === undefined) return;
    // A catch-up may take longer than the grace period: live messages wait
    // for it (for a catch-up in parts, for its last part), not for the timer.
    if (frame.cmd === CMD_CATCHUP) this.#stopGraceTimer(entry);
    if (!entry.isReady) {
      await entry.ready;
      if (session.closed) return;
    }
    try {
      await this.#handle(entry, frame);
    } finally {
      if (!entry.delivery.catchingUp) this.#openGate(entry);
      else if (frame.cmd === CMD_CATCHUP) this.#awaitNextPart(entry);
    }
  }

  /** After a part of a catch-up in parts: open the gate if the next one does not come in time. */
  #awaitNextPart(entry: Entry): void {
    this.#stopGraceTimer(entry);
    entry.graceTimer = this.#timers.setTimeout(() => {
      entry.graceTimer = undefined;
      if (!entry.delivery.catchingUp) return;
      logger.info("Session {session}: no catch-up part came within {ms} ms; live messages flow", {
        session: entry.session.id,
        ms: this.#partsWaitMs,
      });
      entry.delivery.endParts();
      entry.delivery.openGate();
    }, this.#partsWaitMs);
  }

  #openGate(entry: Entry): void {
    this.#stopGraceTimer(entry);
    entry.delivery.openGate();
  }

  #stopGraceTimer(entry: Entry): void {
    if (entry.graceTimer !== undefined) {
      this.#timers.clearTimeout(entry.graceTimer);
      entry.graceTimer = undefined;
    }
  }

  #handle(entry: Entry, frame: WorkFrame): Promise<void> {
    if (frame.cmd === CMD_CATCHUP) {
      return entry.delivery.catchUp(frame.seqs, frame.all, { more: frame.more });
    }
    if (frame.cmd === CMD_HISTORY) return this.#historyPage(entry.session, frame);
    return this.#chat(entry, frame);
  }

  async #historyPage(session: Session, frame: HistoryFrame): Promise<void> {
    const rows = await this.history(session.userId, {
      conv: frame.conv,
      before: frame.before,
      after: frame.after,
      limit: frame.limit,
    });
    session.sendFrame({
      cmd: CMD_HISTORY_PAGE,
      conv: frame.conv,
      rid: frame.rid,
      rows: rows.map(messageFrame),
    });
  }

  /** {@linkcode SessionHandler.onClose}: forget the session everywhere. */
  onClose(session: Session, code: number): void {
    const entry = this.#entries.get(session.id);
    if (entry === undefined) return;
    this.#entries.delete(session.id);
    if (entry.graceTimer !== undefined) {
      this.#timers.clearTimeout(entry.graceTimer);
    }
    this.#dispatcher.remove(entry.delivery);
    logger.info("Session {session} of user {userId} closed with {code}", {
      session: session.id,
      userId: session.userId,
      code,
    });
  }

  async #chat(entry: Entry, frame: ChatFrame): Promise<void> {
    const { session, delivery } = entry;
    const userid = session.userId;
    // Most sends repeat a granted permit: checked without a store read or a promise.
    if (!this.#permitted(userid, frame)) await this.#authorizeSend(userid, frame);
    const cid = frame.cid === "" ? this.#newId() : frame.cid;
    delivery.sending(cid);
    let stored: Awaited<ReturnType<ChatStore["appendMessage"]>>;
    try {
      stored = await this.#store.appendMessage({
        userid,
        cmd: frame.cmd,
        dstid: frame.dstid,
        media: frame.media,
        content: frame.content,
        pic: frame.pic,
        url: frame.url,
        memo: frame.memo,
        amount: frame.amount,
        cid,
      }, this.#now());
    } catch (error) {
      delivery.forget(cid);
      throw error;
    }
    const { message, duplicate } = stored;
    if (duplicate && message.conv !== conversationKey(frame.cmd, userid, frame.dstid)) {
      // The cid names a message this user sent elsewhere: a retry it is not,
      // and answering its ack would drop the new message without a word.
      delivery.forget(cid);
      throw new ClientError(
        "conflict",
        `Message id (cid) "${cid}" was used for another conversation; send with a new cid`,
      );
    }
    const ack: AckFrame = {
      cmd: CMD_ACK,
      cid: message.cid,
      seq: message.seq,
      id: message.id,
      conv: message.conv,
      ts: message.ts,
      dup: duplicate,
    };
    if (duplicate) {
      this.#retried(delivery, message, ack);
      return;
    }
    const published = this.#bus.publish({
      kind: "message",
      message,
      exceptSession: session.id,
    });
    // The ack waits for the bus: acked means the other nodes were told, so a
    // node killed right after an ack strands nothing (its client will not resend).
    delivery.own(message, ack, published);
  }

  /**
   * A retry of a stored message: the node that stored it may have died
   * before publishing it, so its head is announced (sessions that follow
   * the conversation and lack it read it from the store, in order), never
   * the message itself, which reached sessions that had it, or came after
   * it, as a new message (an old page then showed it again, and everything
   * between it and the next one). The ack is queued before the
   * announcement reaches this node's sessions, so this session's own step
   * sends it (with `dup`) and the announcement finds nothing missing here.
   */
  #retried(delivery: SessionDelivery, message: StoredMessage, ack: AckFrame): void {
    const told = Promise.withResolvers<void>();
    delivery.own(message, ack, told.promise);
    const published = this.#bus.publish({
      kind: "heads",
      heads: [{ conv: message.conv, seq: message.seq }],
    });
    if (published === undefined) told.resolve();
    else void published.then(told.resolve);
  }

  /** Whether the permit cache already allows this send (false: ask {@linkcode #authorizeSend}). */
  #permitted(userId: number, frame: ChatFrame): boolean {
    const { dstid } = frame;
    const permits = this.#permits;
    if (frame.cmd !== CMD_SINGLE_MSG) return permits.grantedMember(userId, dstid);
    if (dstid === userId) return false;
    return this.#allowStrangers
      ? permits.grantedUser(dstid)
      : permits.grantedFriends(userId, dstid);
  }

  async #authorizeSend(userId: number, frame: ChatFrame): Promise<void> {
    const { dstid } = frame;
    // Cached "yes" answers only: nothing revokes a friendship or membership.
    const permits = this.#permits;
    if (frame.cmd === CMD_SINGLE_MSG) {
      if (dstid === userId) {
        throw new ClientError("bad_request", "Cannot send a message to yourself");
      }
      if (this.#allowStrangers) {
        if (!await permits.userExists(dstid)) {
          throw new ClientError("not_found", `User ${dstid} does not exist`);
        }
      } else if (!await permits.areFriends(userId, dstid)) {
        throw new ClientError("forbidden", `User ${dstid} is not your friend`);
      }
    } else if (!await permits.isMember(userId, dstid)) {
      throw new ClientError(
        "forbidden",
        `You are not a member of group ${dstid}`,
      );
    }
  }

  /**
   * One page of a conversation `userId` takes part in, ascending by seq.
   * Throws `ClientError` (bad_request, forbidden) when the key is malformed
   * or names someone else's conversation. Without `before`/`after` it is the
   * newest page.
   */
  async history(userId: number, query: HistoryQuery): Promise<StoredMessage[]> {
    const ref = parseConv(query.conv);
    if (ref.kind === "user") {
      if (ref.a !== userId && ref.b !== userId) {
        throw new ClientError("forbidden", "Not your conversation");
      }
    } else if (!await this.#store.isMember(userId, ref.groupId)) {
      throw new ClientError(
        "forbidden",
        `You are not a member of group ${ref.groupId}`,
      );
    }
    const limit = query.limit;
    if (query.after !== undefined) {
      return this.#store.listMessages(query.conv, {
        afterSeq: query.after,
        limit,
      });
    }
    return this.#store.listMessages(query.conv, {
      beforeSeq: query.before ?? Number.MAX_SAFE_INTEGER,
      limit,
    });
  }

  /**
   * `userId` joined or created `groupId` (after the store committed it):
   * tell every node, so their sessions get the group's messages at once.
   * `options.seq` is the group's newest seq read before the join was
   * stored: the user's sessions follow the group from the next one, so a
   * message whose envelope beats this one to a node is still sent there.
   */
  memberJoined(
    groupId: number,
    userId: number,
    options: { readonly seq?: number | undefined } = {},
  ): void {
    const { seq } = options;
    this.#bus.publish({ kind: "member", groupId, userId, ...(seq === undefined ? {} : { seq }) });
  }

  /** Counts of live sessions and the dispatcher's tables. */
  stats(): DispatcherStats & { readonly entries: number } {
    return { ...this.#dispatcher.stats(), entries: this.#entries.size };
  }

  /**
   * Graceful drain: let every open session finish the frames it has
   * received (their stores complete and acks go out), then close it with
   * 4002 "reconnect elsewhere". Sessions still busy after `timeoutMs` are
   * closed anyway; their unacked frames are resent by the client (same
   * `cid`) on the node it reconnects to. Stays subscribed to the bus;
   * call {@linkcode close} afterwards.
   */
  async drain(timeoutMs = 10_000): Promise<void> {
    const entries = [...this.#entries.values()];
    const sessions = entries.map((e) => e.session);
    // An ack waits in the delivery queue for the bus to take its message:
    // both the frames and that queue must be idle, and stay so.
    const settleThenClose = async ({ session, delivery }: Entry): Promise<void> => {
      for (;;) {
        const inbound = session.settled();
        await inbound;
        const queued = delivery.idle();
        await queued;
        if (session.closed) break;
        if (inbound === session.settled() && queued === delivery.idle()) break;
      }
      session.close("reconnectElsewhere");
    };
    let timer: unknown;
    const timeout = new Promise<void>((resolve) => {
      timer = this.#timers.setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.all(entries.map(settleThenClose)), timeout]);
    this.#timers.clearTimeout(timer);
    for (const session of sessions) session.close("reconnectElsewhere");
  }

  /** Close every session with "going away" and leave the bus. Idempotent. */
  close(): void {
    this.#unsubscribe();
    for (const { session } of [...this.#entries.values()]) {
      session.close("goingAway");
    }
  }
}

/** The groups among `heads`' conversations, each once; keys that do not parse are skipped. */
function groupIdsOf(heads: readonly { conv: string }[]): Set<number> {
  const ids = new Set<number>();
  for (const { conv } of heads) {
    try {
      const ref = parseConv(conv);
      if (ref.kind === "group") ids.add(ref.groupId);
    } catch {
      // Not a conversation key: Dispatcher.head() ignores it too.
    }
  }
  return ids;
}
