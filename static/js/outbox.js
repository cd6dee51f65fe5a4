// Messages sent but not yet acknowledged. Each keeps its client id (cid) for
// its whole life, so a resend after a reconnect or a retry after a failure
// is stored once by the server. Events: "status" (detail: {cid, status, seq}).

const ACK_TIMEOUT_MS = 15_000;
const RETRY_DELAY_MS = 2_000;

/** A fresh client message id. */
export function newCid() {
  return crypto.randomUUID?.() ??
    Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0"))
      .join("");
}

/** The unacked messages of this page. */
export class Outbox extends EventTarget {
  #conn;
  #entries = new Map();
  #ackTimeoutMs;

  /** `conn`: the Connection; `ackTimeoutMs`: how long an ack may take before a message shows failed. */
  constructor(conn, { ackTimeoutMs = ACK_TIMEOUT_MS } = {}) {
    super();
    this.#conn = conn;
    this.#ackTimeoutMs = ackTimeoutMs;
    conn.addEventListener("open", () => this.resendAll());
  }

  /** The pending or failed message with `cid`, or undefined. */
  get(cid) {
    return this.#entries.get(cid)?.frame;
  }

  /** How many messages are pending or failed. */
  get size() {
    return this.#entries.size;
  }

  /** The pending and failed messages of conversation `conv`, oldest first. */
  unsent(conv) {
    return [...this.#entries.values()].filter((e) => e.conv === conv)
      .map(({ frame, status, error }) => ({ frame, status, error }));
  }

  /** Queue and send `frame` (it carries its cid) of conversation `conv`. */
  send(frame, conv) {
    const entry = { frame, conv, status: "pending", timer: undefined, timedOut: false };
    this.#entries.set(frame.cid, entry);
    this.#transmit(entry);
  }

  /** Send a failed message again, same cid. */
  retry(cid) {
    const entry = this.#entries.get(cid);
    if (entry === undefined) return;
    this.#setStatus(entry, "pending");
    this.#transmit(entry);
  }

  /**
   * After a (re)connect: resend every unacked message, those that timed out
   * too (a half-open socket loses frames without a close); only the ones the
   * server refused wait for the user's retry.
   */
  resendAll() {
    for (const entry of this.#entries.values()) {
      if (entry.status === "failed" && entry.timedOut) {
        entry.timedOut = false;
        this.#setStatus(entry, "pending");
      }
      if (entry.status === "pending") this.#transmit(entry);
    }
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
    return entry.frame;
  }

  /** An error frame (cmd 21) naming a cid arrived. */
  refused(error) {
    const entry = this.#entries.get(error.cid);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    if (error.retryable) {
      entry.timer = setTimeout(() => this.#transmit(entry), RETRY_DELAY_MS);
      return;
    }
    entry.error = error.msg;
    this.#setStatus(entry, "failed");
  }

  #transmit(entry) {
    clearTimeout(entry.timer);
    // Not connected: stays pending and goes out on the next "open".
    if (!this.#conn.send(entry.frame)) return;
    entry.timer = setTimeout(() => {
      if (this.#entries.get(entry.frame.cid) !== entry) return;
      // Disconnected meanwhile: it goes out again on the next "open".
      if (!this.#conn.isOpen) return;
      entry.error = "No answer from the server";
      entry.timedOut = true;
      this.#setStatus(entry, "failed");
    }, this.#ackTimeoutMs);
  }

  #setStatus(entry, status) {
    entry.status = status;
    this.dispatchEvent(
      new CustomEvent("status", {
        detail: { cid: entry.frame.cid, status, error: entry.error },
      }),
    );
  }
}
