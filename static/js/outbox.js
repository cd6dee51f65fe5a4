// Messages sent but not yet acknowledged. Each keeps its client id (cid) for
// its whole life, so a resend after a reconnect or a retry after a failure
// is stored once by the server. At most MAX_IN_FLIGHT of them are on the
// socket unacked at a time (docs/protocol.md); the rest wait, in the order
// they were sent, and go out as acks come back. Events: "status" (detail:
// {cid, status, seq, error, final}).

const ACK_TIMEOUT_MS = 15_000;
const RETRY_DELAY_MS = 2_000;
/** The longest pause before a refused message goes out again. */
const MAX_RETRY_DELAY_MS = 60_000;
/** Unacked chat frames on the socket at most ("~32", docs/protocol.md). */
export const MAX_IN_FLIGHT = 32;

/**
 * Refusals a Retry can never get past: it sends the same frame with the same
 * cid, and `conflict` (that cid went to another conversation), `bad_request`
 * and `too_large` (the frame itself) would answer the same. Other permanent
 * codes may pass later (`forbidden`: once the two are friends again).
 */
const FINAL_CODES = new Set(["conflict", "bad_request", "too_large"]);

/** A fresh client message id. */
export function newCid() {
  return crypto.randomUUID?.() ??
    Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0"))
      .join("");
}

/**
 * The unacked messages of this page. An entry is "pending" (queued, or
 * `onSocket`: written to the current socket and waiting for its ack) or
 * "failed" (refused, or no ack in time; it waits for Retry or a reconnect).
 * A failed one is `final` when the refusal was for good (`FINAL_CODES`):
 * Retry does nothing for it and a reconnect leaves it.
 */
export class Outbox extends EventTarget {
  #conn;
  #entries = new Map();
  #ackTimeoutMs;
  #maxInFlight;
  #retryDelayMs;

  /**
   * `conn`: the Connection; `ackTimeoutMs`: how long an ack may take before a
   * message shows failed; `maxInFlight`: unacked frames on the socket at most;
   * `retryDelayMs`: the first pause before a retryable refusal is resent.
   */
  constructor(
    conn,
    { ackTimeoutMs = ACK_TIMEOUT_MS, maxInFlight = MAX_IN_FLIGHT, retryDelayMs = RETRY_DELAY_MS } =
      {},
  ) {
    super();
    this.#conn = conn;
    this.#ackTimeoutMs = ackTimeoutMs;
    this.#maxInFlight = maxInFlight;
    this.#retryDelayMs = retryDelayMs;
    conn.addEventListener("open", () => this.resendAll());
  }

  /** The pending or failed message with `cid`, or undefined. */
  get(cid) {
    return this.#entries.get(cid)?.frame;
  }

  /**
   * How many messages could still go out: pending, or failed with a Retry.
   * Those refused for good do not count (leaving the page loses nothing).
   */
  get size() {
    let n = 0;
    for (const entry of this.#entries.values()) if (!entry.final) n++;
    return n;
  }

  /** The pending and failed messages of conversation `conv`, oldest first. */
  unsent(conv) {
    return [...this.#entries.values()].filter((e) => e.conv === conv)
      .map(({ frame, status, error, final }) => ({
        frame,
        status,
        error,
        ...(final ? { final } : {}),
      }));
  }

  /** Queue `frame` (it carries its cid) of conversation `conv`; it goes out when there is room. */
  send(frame, conv) {
    const entry = {
      frame,
      conv,
      status: "pending",
      onSocket: false,
      timer: undefined,
      timedOut: false,
    };
    this.#entries.set(frame.cid, entry);
    this.#pump();
  }

  /** Send a failed message again, same cid (queued behind the cap like any other). */
  retry(cid) {
    const entry = this.#entries.get(cid);
    if (entry === undefined || entry.status !== "failed" || entry.final) return;
    entry.timedOut = false;
    this.#setStatus(entry, "pending");
    this.#pump();
  }

  /**
   * After a (re)connect: nothing is on the new socket, so every unacked
   * message is queued again, those that timed out too (a half-open socket
   * loses frames without a close), and the first ones go out up to the cap;
   * only the ones the server refused wait for the user's retry.
   */
  resendAll() {
    for (const entry of this.#entries.values()) {
      clearTimeout(entry.timer);
      entry.onSocket = false;
      if (entry.status === "failed" && entry.timedOut) {
        entry.timedOut = false;
        this.#setStatus(entry, "pending");
      }
    }
    this.#pump();
  }

  /** An ack (cmd 20) arrived; returns the acked frame or undefined. */
  acked(ack) {
    const entry = this.#entries.get(ack.cid);
    if (entry === undefined) return undefined;
    clearTimeout(entry.timer);
    this.#entries.delete(ack.cid);
    this.dispatchEvent(
      new CustomEvent("status", {
        detail: { cid: ack.cid, status: "sent", seq: ack.seq, ts: ack.ts },
      }),
    );
    this.#pump();
    return entry.frame;
  }

  /** An error frame (cmd 21) naming a cid arrived. */
  refused(error) {
    const entry = this.#entries.get(error.cid);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    if (error.retryable) {
      // Late, for one given up already (timed out: its place went to another).
      if (!entry.onSocket) return;
      // It keeps its place on the socket and goes out again after a pause.
      entry.timer = setTimeout(() => this.#transmit(entry), this.#retryDelay(entry, error));
      return;
    }
    entry.onSocket = false;
    entry.error = error.msg;
    entry.final = FINAL_CODES.has(error.code);
    this.#setStatus(entry, "failed");
    this.#pump();
  }

  /**
   * The pause before a retryable refusal goes out again: the server's
   * `retryAfter` when it gave one (a full disk: 30 s), at least a delay
   * that doubles with each refusal in a row (2, 4, 8 … 60 s), and up to a
   * quarter more at random, so clients refused together (a server in
   * trouble) do not all come back at once.
   */
  #retryDelay(entry, error) {
    entry.refusals = (entry.refusals ?? 0) + 1;
    const backoff = this.#retryDelayMs * 2 ** Math.min(entry.refusals - 1, 10);
    const asked = typeof error.retryAfter === "number" ? error.retryAfter * 1000 : 0;
    // Our own pause stops at a minute; the server's word is kept even past it.
    const base = Math.max(Math.min(backoff, MAX_RETRY_DELAY_MS), asked);
    return base * (1 + 0.25 * Math.random());
  }

  /** Write queued messages, oldest first, while fewer than the cap are unacked on the socket. */
  #pump() {
    let onSocket = 0;
    for (const entry of this.#entries.values()) if (entry.onSocket) onSocket++;
    for (const entry of this.#entries.values()) {
      if (onSocket >= this.#maxInFlight) return;
      if (entry.status !== "pending" || entry.onSocket) continue;
      // Not connected: the queue goes out on the next "open".
      if (!this.#transmit(entry)) return;
      onSocket++;
    }
  }

  #transmit(entry) {
    clearTimeout(entry.timer);
    entry.onSocket = this.#conn.send(entry.frame);
    if (!entry.onSocket) return false;
    entry.timer = setTimeout(() => {
      if (this.#entries.get(entry.frame.cid) !== entry) return;
      // Disconnected meanwhile: it goes out again on the next "open".
      if (!this.#conn.isOpen) return;
      // Taken for lost: its place goes to the next one queued.
      entry.onSocket = false;
      entry.error = "No answer from the server";
      entry.timedOut = true;
      this.#setStatus(entry, "failed");
      this.#pump();
    }, this.#ackTimeoutMs);
    return true;
  }

  #setStatus(entry, status) {
    entry.status = status;
    this.dispatchEvent(
      new CustomEvent("status", {
        detail: {
          cid: entry.frame.cid,
          status,
          error: entry.error,
          ...(entry.final ? { final: true } : {}),
        },
      }),
    );
  }
}
