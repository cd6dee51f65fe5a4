// Files and voice clips on their way into a message: uploaded first, then
// sent. One whose upload fails (after api.js's one wait on a busy server) is
// kept, its Blob in memory, and shown as a failed message of the chat it was
// picked in; Retry uploads it again and then sends it there. Events:
// "held" (detail: {cid, conv, frame, preview, error}: draw it, failed),
// "status" (detail: {cid, status, error}: pending again, or failed again),
// "done" (detail: {cid}: uploaded; drop its bubble, its message is sent next),
// "dropped" (detail: {cid?, media, error}: refused for good, e.g. too large or
// empty: a retry cannot pass, so it is not kept; drop its bubble if it has one).

/** Picked files and recordings not yet uploaded, of this page. */
export class Uploads extends EventTarget {
  #upload;
  #send;
  #onWait;
  #newCid;
  #entries = new Map();

  /**
   * `upload(file, name, onWait)` resolves with the file's URL or throws;
   * `send(fields, target)` sends the message; `newCid()` names a held one.
   */
  constructor({ upload, send, newCid, onWait = () => {} }) {
    super();
    this.#upload = upload;
    this.#send = send;
    this.#newCid = newCid;
    this.#onWait = onWait;
  }

  /** How many uploads failed and wait for Retry, or are being retried. */
  get size() {
    return this.#entries.size;
  }

  /**
   * Upload `file` (sent under `name` when it has none), then send `fields`
   * plus its `url` to `target` (`{conv, cmd, dstid}`, taken when it was picked).
   * Resolves once it is sent or held.
   */
  async send(file, { name, fields, target }) {
    let url;
    try {
      url = await this.#upload(file, name, this.#onWait);
    } catch (e) {
      if (!worthRetry(e)) {
        this.#drop({ media: fields.media, error: errorText(e) });
        return;
      }
      const cid = this.#newCid();
      const entry = { cid, file, name, fields, target, status: "failed", error: errorText(e) };
      this.#entries.set(cid, entry);
      this.dispatchEvent(new CustomEvent("held", { detail: this.#view(entry) }));
      return;
    }
    this.#send({ ...fields, url }, target);
  }

  /** Upload held `cid` again; false when `cid` is not one of ours. */
  retry(cid) {
    const entry = this.#entries.get(cid);
    if (entry === undefined) return false;
    if (entry.status === "failed") this.#retry(entry);
    return true;
  }

  /** The held uploads of conversation `conv` as message frames, oldest first. */
  unsent(conv) {
    return [...this.#entries.values()].filter((e) => e.target.conv === conv)
      .map((e) => this.#view(e));
  }

  async #retry(entry) {
    this.#setStatus(entry, "pending");
    let url;
    try {
      url = await this.#upload(entry.file, entry.name, this.#onWait);
    } catch (e) {
      entry.error = errorText(e);
      if (!worthRetry(e)) {
        this.#entries.delete(entry.cid);
        if (entry.preview) URL.revokeObjectURL(entry.preview);
        this.#drop({ cid: entry.cid, media: entry.fields.media, error: entry.error });
        return;
      }
      this.#setStatus(entry, "failed");
      return;
    }
    this.#entries.delete(entry.cid);
    if (entry.preview) URL.revokeObjectURL(entry.preview);
    // The failed bubble goes first, so the message's own one takes its place.
    this.dispatchEvent(new CustomEvent("done", { detail: { cid: entry.cid } }));
    this.#send({ ...entry.fields, url }, entry.target);
  }

  /** What the chat window draws for `entry`: its message without the URL, and a local preview. */
  #view(entry) {
    entry.preview ??= URL.createObjectURL(entry.file);
    const { cid, target, fields, status, error, preview } = entry;
    const frame = { cmd: target.cmd, dstid: target.dstid, ...fields, url: "", cid };
    return { cid, conv: target.conv, frame, status, error, preview };
  }

  #drop(detail) {
    this.dispatchEvent(new CustomEvent("dropped", { detail }));
  }

  #setStatus(entry, status) {
    entry.status = status;
    this.dispatchEvent(
      new CustomEvent("status", { detail: { cid: entry.cid, status, error: entry.error } }),
    );
  }
}

/**
 * Whether an upload that failed with `e` may pass later: no answer at all
 * (a network error), a server error, a timeout or a busy server. A refusal
 * of the file itself (413 too large, 415 type, 400 empty, 422 quota) never
 * will, and keeping it would only hold its Blob and the leave-page prompt.
 */
export function worthRetry(e) {
  const status = e?.status;
  if (typeof status !== "number") return true;
  return status >= 500 || status === 408 || status === 429;
}

function errorText(e) {
  return e instanceof Error ? e.message : String(e);
}
