// What this device knows of each conversation: the last seq seen with none
// missing before it (what the catch-up asks from), the seqs seen past a gap,
// the last seq read, the unread count and a preview of the newest message.
// Kept in localStorage per user so a reload catches up from where it was.

/** Seqs kept past a gap, at most; past that the gap is given up (history still has it). */
const MAX_ABOVE = 500;

/** Short text for a conversation list row. */
export function previewOf(msg) {
  switch (msg.media) {
    case 1:
      return msg.content;
    case 2:
      return `[News] ${msg.content}`;
    case 3:
      return `[Voice ${msg.amount || 0}"]`;
    case 4:
      return "[Photo]";
    case 5:
      return `[Red packet] ${msg.memo || ""}`.trim();
    case 6:
      return "[Sticker]";
    case 7:
      return `[Link] ${msg.content || msg.url}`;
    case 8:
      return "[Video]";
    case 9:
      return `[Contact] ${msg.memo || msg.content}`;
    default:
      return "[Message]";
  }
}

/** Per-conversation counters of one user on this device. */
export class ConvState {
  #key;
  #storage;
  #convs;

  constructor(userId, storage = globalThis.localStorage) {
    this.#key = `lanchat:convs:${userId}`;
    this.#storage = storage;
    try {
      this.#convs = JSON.parse(storage.getItem(this.#key) ?? "{}") ?? {};
    } catch {
      this.#convs = {};
    }
  }

  #save() {
    try {
      this.#storage.setItem(this.#key, JSON.stringify(this.#convs));
    } catch {
      // Storage full or disabled: counters live in memory only.
    }
  }

  /** A copy of the state of `conv`, or undefined when unknown. */
  get(conv) {
    const st = this.#convs[conv];
    return st ? { ...st } : undefined;
  }

  /** `{conv: lastSeq}` for the catch-up frame. */
  lastSeqs() {
    const out = {};
    // A conversation with nothing yet is left out: with `all:true` an
    // unlisted one is replayed from seq 1 anyway, and a long friend list
    // would make the catch-up many frames longer (each names at most 1,000).
    for (const [conv, st] of Object.entries(this.#convs)) if (st.last > 0) out[conv] = st.last;
    return out;
  }

  /**
   * First sight of a conversation on this device: its newest message (or
   * none) counts as read. Known conversations only get a fresher preview.
   */
  seed(conv, newest) {
    const st = this.#convs[conv];
    if (st === undefined) {
      const seq = newest?.seq ?? 0;
      this.#convs[conv] = {
        last: seq,
        read: seq,
        unread: 0,
        preview: newest ? previewOf(newest) : "",
        ts: newest?.ts ?? 0,
      };
    } else if (newest && newest.seq >= st.last) {
      st.preview = previewOf(newest);
      st.ts = newest.ts;
    }
    this.#save();
  }

  /**
   * Count a message that arrived live or by catch-up. Returns false for one
   * already seen. `mine`: sent by this user; `open`: its window is open.
   */
  record(msg, { mine, open }) {
    // First sight, live (a group joined, a new chat): what came before it is
    // history, not a gap to catch up on, as `seed` takes it.
    const start = msg.seq - 1;
    const st = this.#convs[msg.conv] ??
      (this.#convs[msg.conv] = { last: start, read: start, unread: 0, preview: "", ts: 0 });
    // A message may come after newer ones (a catch-up that came late): it
    // still counts, once, and `last` never jumps a gap, so a reconnect's
    // catch-up asks for what is missing instead of skipping it for good.
    if (!seen(st, msg.seq)) return false;
    if (msg.seq >= newest(st)) {
      st.preview = previewOf(msg);
      st.ts = msg.ts;
    }
    if (open || mine) {
      st.read = Math.max(st.read, msg.seq);
      if (open) st.unread = 0;
    } else {
      st.unread += 1;
    }
    this.#save();
    return true;
  }

  /** Our own message was stored as `seq`. */
  acked(conv, seq, msg) {
    const st = this.#convs[conv];
    if (st === undefined || !seen(st, seq)) return;
    st.read = Math.max(st.read, seq);
    if (seq >= newest(st)) {
      st.preview = previewOf(msg);
      st.ts = msg.ts ?? Date.now();
    }
    this.#save();
  }

  /** Everything in `conv` has been seen. */
  markRead(conv) {
    const st = this.#convs[conv];
    if (st === undefined) return;
    st.read = st.last;
    st.unread = 0;
    this.#save();
  }
}

/**
 * Note `seq` as seen in `st`; false when it was already. `st.last` moves
 * only over seqs with none missing before them; later ones wait in
 * `st.above` (sorted) until the gap is filled.
 */
function seen(st, seq) {
  const above = st.above ?? [];
  if (seq <= st.last || above.includes(seq)) return false;
  if (seq === st.last + 1) {
    st.last = seq;
    while (above.length > 0 && above[0] === st.last + 1) st.last = above.shift();
  } else {
    above.push(seq);
    above.sort((a, b) => a - b);
    // A gap that never fills (messages this device cannot get) must not grow
    // without bound: give it up, as before this list existed.
    if (above.length > MAX_ABOVE) st.last = above.splice(0).pop();
  }
  if (above.length > 0) st.above = above;
  else delete st.above;
  return true;
}

/** The newest seq seen in `st`. */
function newest(st) {
  const above = st.above ?? [];
  return above.length > 0 ? above[above.length - 1] : st.last;
}
