/**
 * One websocket session: the receive loop (parse, answer heartbeats, hand
 * the rest to a handler one at a time), a bounded outbound queue measured in
 * bytes, the idle timeout, and closing with a code from `close_codes.ts`.
 * The socket itself hides behind {@linkcode Connection}, time behind
 * {@linkcode Timers}, so tests drive both by hand.
 *
 * An idle session is kept small (issue #7: memory per idle connection): its
 * idle and login-recheck deadlines are one entry in a {@linkcode DeadlineQueue}
 * shared by every session of the node, not two runtime timers, and the
 * message rate is a token bucket in two fields, not a limiter object.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { CLOSE, type CloseName } from "./close_codes.ts";
import {
  type Deadline,
  DeadlineQueue,
  SYSTEM_TIMERS,
  type Timers,
  type Wakeable,
} from "./deadline_queue.ts";
import { ClientError } from "./errors.ts";
import {
  type ClientFrame,
  CMD_HEART,
  encode,
  errorFrame,
  FrameError,
  type HeartFrame,
  parseFrame,
  refusedFrameCid,
  type ServerFrame,
} from "./protocol.ts";
import { SESSION_DEFAULTS, type SessionIdentity, type SessionOptions } from "./session_options.ts";

export { SYSTEM_TIMERS, type Timers } from "./deadline_queue.ts";
export {
  HEARTBEAT_INTERVAL_MS,
  SESSION_DEFAULTS,
  type SessionIdentity,
  type SessionOptions,
} from "./session_options.ts";

const logger = getLogger(["chat", "session"]);

/**
 * The socket as a session sees it.
 *
 * Contract: `send` queues and returns at once (never blocks); it may throw
 * when the socket is no longer open. `bufferedAmount` is the number of bytes
 * queued but not yet written to the network. `close` is idempotent.
 */
export interface Connection {
  /** Queue one text frame. */
  send(text: string): void;
  /** Start the closing handshake. */
  close(code: number, reason: string): void;
  /** Bytes queued and not yet sent. */
  readonly bufferedAmount: number;
}

/** A parsed frame that is not a heartbeat. */
export type WorkFrame = Exclude<ClientFrame, HeartFrame>;

/** What a session hands its frames to. */
export interface SessionHandler {
  /**
   * Handle one frame. Frames of a session are handled one at a time, in
   * arrival order. A thrown `ClientError` becomes an error frame; anything
   * else is logged and closes the session with code 1011.
   */
  onFrame(session: Session, frame: WorkFrame): Promise<void>;
  /** The session closed (called once). */
  onClose(session: Session, code: number): void;
}

/**
 * One settled promise shared by every idle session and delivery queue, so
 * none keeps its own (issue #7: memory per idle connection). Settled
 * promises hold no state a caller can change.
 */
export const SETTLED: Promise<void> = Promise.resolve();

/** How often {@linkcode Session.roomFor} looks at the queue again, ms. */
const DRAIN_POLL_MS = 10;

/** One connected websocket of one user. */
export class Session implements Wakeable {
  /** Session id, unique across the cluster. */
  readonly id: string;
  /** The authenticated user. */
  readonly userId: number;
  #conn: Connection;
  #handler: SessionHandler;
  #timers: Timers;
  #maxQueueBytes: number;
  #idleTimeoutMs: number;
  #maxBadFrames: number;
  #maxPending: number;
  #held = 0;
  #badFrames = 0;
  #pending = 0;
  /** The frames in flight, chained; {@linkcode SETTLED} when none is. */
  #inbound: Promise<void> = SETTLED;
  #lastFrameAt: number;
  #closeCode: number | undefined;
  #deadlines: DeadlineQueue;
  /** The one pending wake-up (the earlier of the idle and recheck deadlines). */
  #deadline: Deadline | undefined;
  #stillValid: (() => Promise<boolean>) | undefined;
  #revalidateMs: number;
  /** When to recheck the login; Infinity while a recheck runs or without `stillValid`. */
  #revalidateAt = Infinity;
  /** The shared `messageRate` settings and this session's bucket. */
  #rate: { readonly perSecond: number; readonly burst: number } | undefined;
  #tokens = 0;
  #tokensAt = 0;
  #onRateLimited: (() => void) | undefined;

  /** Start a session on an open connection; the idle timer starts now. */
  constructor(
    conn: Connection,
    options: SessionOptions & SessionIdentity,
  ) {
    this.id = options.id;
    this.userId = options.userId;
    this.#conn = conn;
    this.#handler = options.handler;
    this.#timers = options.timers ?? SYSTEM_TIMERS;
    this.#maxQueueBytes = options.maxQueueBytes ??
      SESSION_DEFAULTS.maxQueueBytes;
    this.#idleTimeoutMs = options.idleTimeoutMs ??
      SESSION_DEFAULTS.idleTimeoutMs;
    this.#maxBadFrames = options.maxBadFrames ?? SESSION_DEFAULTS.maxBadFrames;
    this.#maxPending = options.maxPendingFrames ??
      SESSION_DEFAULTS.maxPendingFrames;
    this.#lastFrameAt = this.#timers.now();
    const rate = options.messageRate;
    if (rate !== undefined) {
      if (!(rate.burst >= 1) || !(rate.perSecond > 0)) {
        throw new RangeError("A rate limiter needs burst >= 1 and perSecond > 0");
      }
      this.#rate = rate;
      this.#tokens = rate.burst;
      this.#tokensAt = this.#lastFrameAt;
    }
    this.#onRateLimited = options.onRateLimited;
    this.#deadlines = options.deadlines ?? new DeadlineQueue(this.#timers);
    this.#stillValid = options.stillValid;
    this.#revalidateMs = options.revalidateMs ?? SESSION_DEFAULTS.revalidateMs;
    if (this.#stillValid !== undefined) {
      const spread = 1 - 0.5 * (options.random ?? Math.random)();
      this.#revalidateAt = this.#lastFrameAt + Math.round(this.#revalidateMs * spread);
    }
    this.#schedule();
  }

  /** Whether the session has closed. */
  get closed(): boolean {
    return this.#closeCode !== undefined;
  }

  /** The close code, once closed. */
  get closeCode(): number | undefined {
    return this.#closeCode;
  }

  /** Bytes queued for this client: the socket's buffer plus held bytes. */
  get queuedBytes(): number {
    return this.#conn.bufferedAmount + this.#held;
  }

  /**
   * Whether `bytes` more would fill the socket's buffer past half the
   * queue's limit (see {@linkcode roomFor}). Held bytes do not count: they
   * wait for the very sends that would wait for them.
   */
  crowded(bytes: number): boolean {
    return this.#conn.bufferedAmount + bytes > this.#maxQueueBytes / 2;
  }

  /**
   * Resolves once `bytes` more fit in half the queue's limit, or the session
   * closed. A client that has not drained that far in `maxWaitMs` reads too
   * slowly: it is closed with 4000 then, as a full queue would. For bulk sends (a
   * catch-up's pages): a page of large messages sent at once passed the
   * limit and closed a healthy client with 4000, which then reconnected
   * into the same catch-up.
   */
  async roomFor(bytes: number, maxWaitMs = 30_000): Promise<void> {
    const end = this.#timers.now() + maxWaitMs;
    while (!this.closed && this.crowded(bytes) && this.#timers.now() < end) {
      await new Promise<void>((resolve) => this.#timers.setTimeout(resolve, DRAIN_POLL_MS));
    }
    // Else each row would wait its own 30 s: a stalled reader kept for hours.
    if (!this.closed && this.crowded(bytes)) this.close("queueOverflow");
  }

  /** Feed one frame from the socket. Never throws. */
  receive(data: string | ArrayBuffer | Uint8Array): void {
    if (this.closed) return;
    this.#lastFrameAt = this.#timers.now();
    if (this.#rate !== undefined && !this.#takeToken(this.#rate)) {
      this.#onRateLimited?.();
      // Parsed only for its cid, so the client knows which message to retry.
      this.#refuse(
        new ClientError(
          "rate_limited",
          `Too many messages: at most ${this.#rate.perSecond} a second, slow down and retry`,
        ),
        refusedFrameCid(data),
      );
      return;
    }
    let frame: ClientFrame;
    try {
      frame = parseFrame(data);
    } catch (error) {
      this.#refuse(error);
      return;
    }
    if (frame.cmd === CMD_HEART) {
      this.#badFrames = 0;
      this.sendFrame({ cmd: CMD_HEART });
      return;
    }
    if (this.#pending >= this.#maxPending) {
      const cid = "cid" in frame ? frame.cid : undefined;
      this.sendFrame(errorFrame(
        new ClientError("rate_limited", "Too many frames in flight, retry"),
        cid,
      ));
      return;
    }
    this.#badFrames = 0;
    // With none in flight the frame starts now, not behind a settled promise:
    // a chat frame is the hot path, and a `then` per frame is two more promises.
    this.#inbound = this.#pending++ === 0
      ? this.#run(frame)
      : this.#inbound.then(() => this.#run(frame));
  }

  async #run(frame: WorkFrame): Promise<void> {
    try {
      if (!this.closed) await this.#handler.onFrame(this, frame);
    } catch (error) {
      if (error instanceof ClientError) {
        this.sendFrame(
          errorFrame(error, "cid" in frame ? frame.cid : undefined),
        );
      } else {
        logger.error("Session {session} failed on a frame: {error}", {
          session: this.id,
          userId: this.userId,
          error,
        });
        this.close("internal");
      }
    } finally {
      // The last frame's promise is not kept: every idle session would hold one.
      if (--this.#pending === 0) this.#inbound = SETTLED;
    }
  }

  /** Token bucket (as `RateLimiter` with one key): refill since the last frame, take one. */
  #takeToken(rate: { readonly perSecond: number; readonly burst: number }): boolean {
    const now = this.#lastFrameAt;
    const elapsed = Math.max(0, now - this.#tokensAt);
    const tokens = Math.min(rate.burst, this.#tokens + elapsed * (rate.perSecond / 1000));
    this.#tokensAt = now;
    const ok = tokens >= 1;
    this.#tokens = ok ? tokens - 1 : tokens;
    return ok;
  }

  #refuse(error: unknown, cid = error instanceof FrameError ? error.cid : undefined): void {
    if (!(error instanceof ClientError)) throw error;
    this.sendFrame(errorFrame(error, cid));
    if (++this.#badFrames >= this.#maxBadFrames) this.close("abuse");
  }

  /** Send a server frame; false when the session is (or just got) closed. */
  sendFrame(frame: ServerFrame): boolean {
    return this.send(encode(frame));
  }

  /**
   * Send an encoded frame. Closes with 4000 instead when the queue would
   * pass its byte limit; returns whether the frame was queued.
   */
  send(text: string): boolean {
    if (this.closed) return false;
    if (this.queuedBytes + text.length > this.#maxQueueBytes) {
      this.close("queueOverflow");
      return false;
    }
    try {
      this.#conn.send(text);
      return true;
    } catch (error) {
      logger.debug("Send on session {session} failed: {error}", {
        session: this.id,
        error,
      });
      this.closedByPeer();
      return false;
    }
  }

  /**
   * Count `bytes` waiting in memory for this client (messages queued behind a
   * store read) against the queue limit. Returns false, closing with 4000,
   * when that passes the limit.
   */
  hold(bytes: number): boolean {
    if (this.closed) return false;
    this.#held += bytes;
    if (this.queuedBytes > this.#maxQueueBytes) {
      this.close("queueOverflow");
      return false;
    }
    return true;
  }

  /** Stop counting bytes given to {@linkcode hold}. */
  release(bytes: number): void {
    this.#held = Math.max(0, this.#held - bytes);
  }

  /** Close with a catalogue code. Idempotent. */
  close(name: CloseName): void {
    if (this.closed) return;
    const { code, reason } = CLOSE[name];
    try {
      this.#conn.close(code, reason);
    } catch (error) {
      logger.debug("Close of session {session} failed: {error}", {
        session: this.id,
        error,
      });
    }
    this.#finish(code);
  }

  /** The socket closed from the other side (or failed). Idempotent. */
  closedByPeer(code: number = CLOSE.normal.code): void {
    if (!this.closed) this.#finish(code);
  }

  /** Resolves when every frame received so far has been handled. */
  settled(): Promise<void> {
    return this.#inbound;
  }

  #finish(code: number): void {
    this.#closeCode = code;
    if (this.#deadline !== undefined) {
      this.#deadlines.cancel(this.#deadline);
      this.#deadline = undefined;
    }
    this.#held = 0;
    logger.debug("Session {session} closed with {code}", {
      session: this.id,
      userId: this.userId,
      code,
    });
    this.#handler.onClose(this, code);
  }

  /**
   * {@linkcode Wakeable.wake}, called by the deadline queue: close when idle
   * too long, start a due login recheck, then wait for the next deadline.
   */
  wake(now: number): void {
    this.#deadline = undefined;
    if (this.closed) return;
    if (this.#idleTimeoutMs > 0 && now - this.#lastFrameAt >= this.#idleTimeoutMs) {
      this.close("idleTimeout");
      return;
    }
    if (now >= this.#revalidateAt) void this.#revalidate();
    this.#schedule();
  }

  /**
   * Keep one wake-up at the earlier of the idle and recheck deadlines. A
   * frame only moves `#lastFrameAt`: the wake-up then comes early and
   * reschedules, so receiving never touches the queue.
   */
  #schedule(): void {
    const idleAt = this.#idleTimeoutMs > 0 ? this.#lastFrameAt + this.#idleTimeoutMs : Infinity;
    const at = Math.min(idleAt, this.#revalidateAt);
    const current = this.#deadline;
    if (current !== undefined) {
      if (current.at <= at) return;
      this.#deadlines.cancel(current);
    }
    this.#deadline = at === Infinity ? undefined : this.#deadlines.add(at, this);
  }

  async #revalidate(): Promise<void> {
    const stillValid = this.#stillValid;
    if (stillValid === undefined) return;
    this.#revalidateAt = Infinity;
    let valid = true;
    try {
      valid = await stillValid();
    } catch (error) {
      logger.warn("Cannot recheck the login of session {session}: {error}", {
        session: this.id,
        error,
      });
    }
    if (this.closed) return;
    if (!valid) {
      this.close("unauthorized");
      return;
    }
    this.#revalidateAt = this.#timers.now() + this.#revalidateMs;
    this.#schedule();
  }
}
