/**
 * The tunables and identity a {@linkcode Session} is opened with, and their
 * defaults (split from session.ts to keep that file about the session).
 *
 * @module
 */

import type { DeadlineQueue, Timers } from "./deadline_queue.ts";
import type { SessionHandler } from "./session.ts";

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
   * A number in [0, 1) that places the first login recheck between half and
   * all of `revalidateMs`, so sessions opened together (a reconnect storm)
   * do not all hit the store in the same second each period.
   * @default {Math.random}
   */
  random?: () => number;
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
  /**
   * Where the idle and login-recheck deadlines wait; share one among all
   * sessions of a node (it must run on `timers`). @default {one per session}
   */
  deadlines?: DeadlineQueue;
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
