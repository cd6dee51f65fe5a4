// The websocket's life: connect (the login cookie authenticates it; no token
// in the URL), catch up on every (re)connect, heartbeat, reconnect with
// exponential backoff and jitter, and a state the page shows.

const HEARTBEAT_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** Close codes after which reconnecting would not help (docs/protocol.md's "reconnect? no"). */
const FINAL_CODES = new Set([1000, 1002, 1007, 1008, 1009, 4401]);
/** Most conversations one catch-up frame may name (the server refuses more). */
const CATCHUP_PART = 1_000;
/** Catch-up parts on the socket at once; each done frame (cmd 31) lets the next one go. */
const CATCHUP_WINDOW = 4;

/**
 * The cmd-30 frames of a catch-up from `seqs` (`{conv: lastSeq}`): parts of
 * at most `max` conversations, all but the last with `more: true`, the last
 * with `all: true`. Up to `max` conversations it is the one frame every
 * server version takes.
 */
export function catchUpFrames(seqs, max = CATCHUP_PART) {
  const entries = Object.entries(seqs);
  const parts = [];
  for (let i = 0; i === 0 || i < entries.length; i += max) {
    parts.push(Object.fromEntries(entries.slice(i, i + max)));
  }
  return parts.map((part, i) =>
    i < parts.length - 1 ? { cmd: 30, seqs: part, more: true } : { cmd: 30, seqs: part, all: true }
  );
}

/**
 * Delay before reconnect attempt `attempt` (0-based): 1 s doubling to 30 s,
 * with "equal jitter" (half fixed, half random) so clients spread out.
 */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  return Math.round(base / 2 + random() * base / 2);
}

/**
 * One logical connection. Events: "state" (detail: connecting | online |
 * reconnecting | offline | closed), "frame" (detail: parsed server frame),
 * "open" (after the catch-up frame went out), "unauthorized".
 */
export class ChatConnection extends EventTarget {
  #url;
  #catchUp;
  /** Catch-up parts not sent yet on the current socket. */
  #parts = [];
  #socket;
  #attempt = 0;
  #retryTimer;
  #heartTimer;
  #pongTimer;
  #stopped = false;
  #state = "connecting";

  /** `catchUp()` returns the `seqs` object for the cmd-30 frame. */
  constructor({ url, catchUp }) {
    super();
    this.#url = url;
    this.#catchUp = catchUp;
    globalThis.addEventListener("offline", () => this.#drop("offline"));
    globalThis.addEventListener("online", () => this.reconnectNow());
  }

  /** Current state name. */
  get state() {
    return this.#state;
  }

  /** Whether frames can be sent now. */
  get isOpen() {
    return this.#socket?.readyState === WebSocket.OPEN && this.#state === "online";
  }

  /** Start connecting. */
  start() {
    this.#connect();
  }

  /** Stop for good (logout). */
  stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#clearHeart();
    this.#socket?.close(1000, "Bye");
    this.#setState("closed");
  }

  /** Reconnect at once (network came back), resetting the backoff. */
  reconnectNow() {
    if (this.#stopped) return;
    this.#attempt = 0;
    if (this.#socket && this.#socket.readyState <= WebSocket.OPEN) return;
    clearTimeout(this.#retryTimer);
    this.#connect();
  }

  /** Send a frame; false when not connected (the caller keeps it pending). */
  send(frame) {
    if (!this.isOpen) return false;
    try {
      this.#socket.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  #connect() {
    if (this.#stopped) return;
    if (navigator.onLine === false) {
      this.#setState("offline");
      return;
    }
    this.#setState(this.#attempt === 0 ? "connecting" : "reconnecting");
    let opened = false;
    const socket = new WebSocket(this.#url);
    this.#socket = socket;
    socket.addEventListener("open", () => {
      if (socket !== this.#socket) return;
      opened = true;
      // A long conversation list goes in parts; the server holds live
      // messages until the last one, so they still come after the replay.
      this.#parts = catchUpFrames(this.#catchUp());
      for (const part of this.#parts.splice(0, CATCHUP_WINDOW)) socket.send(JSON.stringify(part));
      this.#setState("online");
      this.#startHeart();
      this.dispatchEvent(new Event("open"));
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.#socket) return;
      clearTimeout(this.#pongTimer);
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.cmd === 31) {
        this.#attempt = 0;
        const next = this.#parts.shift();
        if (next !== undefined) socket.send(JSON.stringify(next));
      }
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.#socket) return;
      this.#clearHeart();
      this.#socket = undefined;
      if (this.#stopped) return;
      if (event.code === 4401) {
        this.#stopped = true;
        this.#setState("closed");
        this.dispatchEvent(new Event("unauthorized"));
        return;
      }
      if (FINAL_CODES.has(event.code)) {
        this.#setState("closed");
        return;
      }
      if (!opened) this.dispatchEvent(new Event("refused"));
      this.#schedule();
    });
  }

  #schedule() {
    if (this.#stopped) return;
    if (navigator.onLine === false) {
      this.#setState("offline");
      return;
    }
    this.#setState("reconnecting");
    clearTimeout(this.#retryTimer);
    const delay = backoffDelay(this.#attempt);
    this.#attempt = Math.min(this.#attempt + 1, 10);
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  /** The network went away: close now instead of waiting for TCP to notice. */
  #drop(state) {
    if (this.#stopped) return;
    clearTimeout(this.#retryTimer);
    this.#clearHeart();
    const socket = this.#socket;
    this.#socket = undefined;
    socket?.close(4000, "Network lost");
    this.#setState(state);
  }

  #startHeart() {
    this.#clearHeart();
    this.#heartTimer = setInterval(() => {
      if (!this.send({ cmd: 0 })) return;
      clearTimeout(this.#pongTimer);
      this.#pongTimer = setTimeout(() => {
        // No answer: the connection is dead even if TCP has not noticed.
        const socket = this.#socket;
        this.#socket = undefined;
        this.#clearHeart();
        socket?.close(4000, "No heartbeat answer");
        this.#schedule();
      }, PONG_TIMEOUT_MS);
    }, HEARTBEAT_MS);
  }

  #clearHeart() {
    clearInterval(this.#heartTimer);
    clearTimeout(this.#pongTimer);
  }
}
