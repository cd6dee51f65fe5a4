/**
 * One websocket session: the receive loop (parse, answer heartbeats, hand
 * the rest to a handler one at a time), a bounded outbound queue measured in
 * bytes, the idle timeout, and closing with a code from `close_codes.ts`.
 * The socket itself hides behind {@linkcode Connection}, time behind
 * {@linkcode Timers}, so tests drive both by hand.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { CLOSE, type CloseName } from "./close_codes.ts";
import { ClientError } from "./errors.ts";
import { RateLimiter } from "./rate_limit.ts";
import {
  type ClientFrame,
  CMD_HEART,
  encode,
  errorFrame,
  type HeartFrame,
  parseFrame,
  type ServerFrame,
} from "./protocol.ts";

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

/** Time, injectable. Timer ids are opaque. */
export interface Timers {
  /** Epoch milliseconds. */
  now(): number;
  /** Call `fn` once after `ms`. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancel a timer; unknown ids are ignored. */
  clearTimeout(id: unknown): void;
}

/** The real clock and timers. */
export const SYSTEM_TIMERS: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};

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

/** Tunables of a session. */
export interface SessionOptions {
  /** Outbound bytes (socket buffer + held) before closing with 4000. @default {1048576} */
  maxQueueBytes?: number;
  /** Close with 4001 when no frame arrives for this long; 0 never. @default {60000} */
  idleTimeoutMs?: number;
  /** Close with 1008 after this many refused frames in a row. @default {20} */
  maxBadFrames?: number;
  /** Frames waiting to be handled before new ones are refused (rate_limited). @default {64} */
  maxPendingFrames?: number;
  /** How often `stillValid` is asked about the login. @default {60000} */
  revalidateMs?: number;
  /**
   * Frames (any, heartbeats too) accepted per second, `burst` at once; each
   * frame over it gets an error frame `rate_limited` and counts as refused
   * (so a flood closes with 1008). @default {unlimited}
   */
  messageRate?: { readonly perSecond: number; readonly burst: number };
  /** Told about each frame refused by `messageRate` (the metric). @default {none} */
  onRateLimited?: () => void;
  /** Clock and timers. @default {SYSTEM_TIMERS} */
  timers?: Timers;
}

/** Per-session extras given by whoever opens the session. */
export interface SessionIdentity {
  /** Session id, unique across the cluster. */
  id: string;
  /** The authenticated user. */
  userId: number;
  /** Receives frames and the close. */
  handler: SessionHandler;
  /**
   * Asked every `revalidateMs`; false (token revoked or expired) closes the
   * session with 4401. A rejection is logged and ignored. @default {none}
   */
  stillValid?: () => Promise<boolean>;
}

/** Defaults of {@linkcode SessionOptions}. */
export const SESSION_DEFAULTS = {
  maxQueueBytes: 1024 * 1024,
  idleTimeoutMs: 60_000,
  maxBadFrames: 20,
  maxPendingFrames: 64,
  revalidateMs: 60_000,
} as const;

/** Suggested client heartbeat interval (documented in docs/protocol.md). */
export const HEARTBEAT_INTERVAL_MS = 25_000;

/** One connected websocket of one user. */
export class Session {
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
  #inbound: Promise<void> = Promise.resolve();
  #lastFrameAt: number;
  #idleTimer: unknown;
  #revalidateTimer: unknown;
  #closeCode: number | undefined;
  #rate: RateLimiter | undefined;
  #ratePerSecond = 0;
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
    if (options.messageRate !== undefined) {
      const timers = this.#timers;
      this.#rate = new RateLimiter({ ...options.messageRate, maxKeys: 1, now: () => timers.now() });
      this.#ratePerSecond = options.messageRate.perSecond;
    }
    this.#onRateLimited = options.onRateLimited;
    if (this.#idleTimeoutMs > 0) this.#armIdle(this.#idleTimeoutMs);
    if (options.stillValid !== undefined) {
      this.#armRevalidate(
        options.stillValid,
        options.revalidateMs ?? SESSION_DEFAULTS.revalidateMs,
      );
    }
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

  /** Feed one frame from the socket. Never throws. */
  receive(data: string | ArrayBuffer | Uint8Array): void {
    if (this.closed) return;
    this.#lastFrameAt = this.#timers.now();
    if (this.#rate !== undefined && !this.#rate.take("").ok) {
      this.#onRateLimited?.();
      this.#refuse(
        new ClientError(
          "rate_limited",
          `Too many messages: at most ${this.#ratePerSecond} a second, slow down and retry`,
        ),
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
    this.#pending++;
    this.#inbound = this.#inbound.then(async () => {
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
        this.#pending--;
      }
    });
  }

  #refuse(error: unknown): void {
    if (!(error instanceof ClientError)) throw error;
    this.sendFrame(errorFrame(error));
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
    if (this.#idleTimer !== undefined) {
      this.#timers.clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    }
    if (this.#revalidateTimer !== undefined) {
      this.#timers.clearTimeout(this.#revalidateTimer);
      this.#revalidateTimer = undefined;
    }
    this.#held = 0;
    logger.debug("Session {session} closed with {code}", {
      session: this.id,
      userId: this.userId,
      code,
    });
    this.#handler.onClose(this, code);
  }

  #armIdle(ms: number): void {
    this.#idleTimer = this.#timers.setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.closed) return;
      const idle = this.#timers.now() - this.#lastFrameAt;
      if (idle >= this.#idleTimeoutMs) this.close("idleTimeout");
      else this.#armIdle(this.#idleTimeoutMs - idle);
    }, ms);
  }

  #armRevalidate(stillValid: () => Promise<boolean>, ms: number): void {
    this.#revalidateTimer = this.#timers.setTimeout(async () => {
      this.#revalidateTimer = undefined;
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
      if (!valid) this.close("unauthorized");
      else this.#armRevalidate(stillValid, ms);
    }, ms);
  }
}
