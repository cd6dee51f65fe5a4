/**
 * The one catalogue of websocket close codes the server uses. 1000-1011 are
 * the RFC 6455 codes; 4000-4999 are ours. `reconnect` tells a client whether
 * reconnecting (and then sending a catch-up frame) can help.
 *
 * @module
 */

/** One entry of the catalogue. */
export interface CloseCode {
  /** The numeric close code on the wire. */
  readonly code: number;
  /** The close reason sent with it (sentence case, under 123 bytes). */
  readonly reason: string;
  /** Whether the client should reconnect (with backoff) and catch up. */
  readonly reconnect: boolean;
}

/** Every close code the server sends. */
export const CLOSE = {
  /** The client closed, or the server ended the session on request. */
  normal: { code: 1000, reason: "Closed", reconnect: false },
  /** The server is shutting down; reconnect (to another node) and catch up. */
  goingAway: { code: 1001, reason: "Server shutting down", reconnect: true },
  /** A malformed websocket frame (unmasked, reserved bits, unknown opcode): a client bug. */
  protocolError: { code: 1002, reason: "Malformed websocket frame", reconnect: false },
  /** A text message that is not UTF-8. */
  invalidText: { code: 1007, reason: "Text is not UTF-8", reconnect: false },
  /** A websocket message over the size limit (1 MiB). */
  tooBig: { code: 1009, reason: "Message too big", reconnect: false },
  /**
   * Abuse: too many refused frames in a row. Reconnecting with the same
   * behaviour will be refused again; fix the client.
   */
  abuse: { code: 1008, reason: "Too many bad frames", reconnect: false },
  /**
   * The node is draining (SIGTERM): it finished storing the frames it had
   * received, then closed. Reconnect at once (through the load balancer, to
   * another node) and catch up; nothing acked is lost.
   */
  reconnectElsewhere: {
    code: 4002,
    reason: "Server draining, reconnect elsewhere",
    reconnect: true,
  },
  /** An unexpected server fault; reconnect with backoff and catch up. */
  internal: { code: 1011, reason: "Internal error", reconnect: true },
  /**
   * Slow consumer: the outbound queue passed its byte limit because the
   * client did not read fast enough. Reconnect and catch up.
   */
  queueOverflow: {
    code: 4000,
    reason: "Outbound queue overflow",
    reconnect: true,
  },
  /** No frame arrived within the idle timeout; send heartbeats (cmd 0). */
  idleTimeout: { code: 4001, reason: "Idle timeout", reconnect: true },
  /**
   * The login token was revoked or expired while connected. Log in again
   * before reconnecting; the old token will be refused with HTTP 401.
   */
  unauthorized: {
    code: 4401,
    reason: "Login expired or revoked",
    reconnect: false,
  },
} as const satisfies Record<string, CloseCode>;

/** A name in {@linkcode CLOSE}. */
export type CloseName = keyof typeof CLOSE;
