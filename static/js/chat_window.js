// The chat window: stored history (newest page on open, older pages when
// scrolled to the top), live messages merged by seq, local messages marked
// pending / sent / failed, and the composer. The composer's text is never
// touched by incoming messages; each conversation keeps its own draft.
import { get } from "./api.js";
import { byId, siteUrl, toast } from "./dom.js";
import { messageRow } from "./render.js";

const PAGE = 30;

/** One open conversation at a time. */
export class ChatWindow {
  #me;
  #users;
  #handlers;
  #target;
  #list = byId("msglist");
  #scroller = byId("messages");
  #status = byId("history-status");
  #text = byId("text");
  #drafts = new Map();
  #oldest = Infinity;
  #hasMore = false;
  #loading = false;
  #epoch = 0;

  /**
   * `me`: the user; `users.peek(id)` / `users.get(id)` give `{nickname,
   * avatar}`; `handlers`: `{onClose, onContact, onRetry, unsent}` (`unsent(conv)`: our unacked
   * frames and held uploads, `{frame, status, error, preview}`).
   */
  constructor({ me, users, handlers }) {
    this.#me = me;
    this.#users = users;
    this.#handlers = handlers;
    byId("chat-back").addEventListener("click", () => this.close());
    this.#scroller.addEventListener("scroll", () => {
      if (this.#scroller.scrollTop < 80) this.#loadOlder();
    });
  }

  /** The open conversation `{conv, cmd, dstid, title}`, or undefined. */
  get target() {
    return this.#target;
  }

  /** Whether `conv` is open and visible. */
  isOpen(conv) {
    return this.#target?.conv === conv && document.visibilityState === "visible";
  }

  /** Open a conversation and load its newest page of history. */
  async open(target) {
    if (this.#target) this.#drafts.set(this.#target.conv, this.#text.value);
    this.#target = target;
    this.#epoch += 1;
    const epoch = this.#epoch;
    const title = byId("chat-title");
    title.textContent = target.title;
    byId("chat").hidden = false;
    this.#list.replaceChildren();
    // Keyboard and screen-reader users land in the conversation, on its
    // name (not the text field: that would open a phone's keyboard). After
    // the list is emptied: a contact card there that had the focus is gone.
    if (!byId("chat").contains(document.activeElement)) title.focus({ preventScroll: true });
    this.#text.value = this.#drafts.get(target.conv) ?? "";
    this.#text.dispatchEvent(new Event("input"));
    this.#oldest = Infinity;
    this.#hasMore = false;
    this.#status.textContent = "Loading…";
    try {
      const page = await get("/message/history", { conv: target.conv, limit: PAGE });
      if (epoch !== this.#epoch) return;
      for (const msg of page.rows) this.#place(msg, "sent");
      this.#hasMore = page.rows.length === PAGE && this.#oldest > 1;
      this.#status.textContent = this.#hasMore ? "" : "Start of the conversation";
    } catch (e) {
      if (epoch !== this.#epoch) return;
      this.#status.textContent = `History unavailable: ${e.message}`;
    }
    // Ours not yet stored go below the history again, failed ones with their Retry or reason.
    for (
      const { frame, status, error, final, preview } of this.#handlers.unsent?.(target.conv) ?? []
    ) {
      this.showLocal({ ...frame, conv: target.conv }, preview);
      if (status === "failed") this.setStatus({ cid: frame.cid, status, error, final });
    }
    this.#scrollToBottom();
  }

  /** Close the window (back to the lists). */
  close() {
    const conv = this.#target?.conv;
    if (this.#target) this.#drafts.set(this.#target.conv, this.#text.value);
    this.#target = undefined;
    this.#epoch += 1;
    const hadFocus = byId("chat").contains(document.activeElement);
    byId("chat").hidden = true;
    this.#handlers.onClose?.(conv, hadFocus);
  }

  /** A stored message of the open conversation (live, catch-up or our own echo). */
  receive(msg) {
    if (!this.#target || msg.conv !== this.#target.conv) return;
    const nearBottom = this.#nearBottom();
    this.#place(msg, "sent");
    if (nearBottom || msg.userid === this.#me.id) this.#scrollToBottom();
  }

  /**
   * Show a message we are sending, before the server has it. `preview`: a
   * blob: URL of a photo or video not uploaded yet, shown in its place.
   */
  showLocal(frame, preview) {
    if (!this.#target || frame.conv !== this.#target.conv) return;
    // Drawn already: by the history (stored, its ack lost with a socket), or
    // by an event that came while the history loaded.
    if (this.#list.querySelector(`li[data-cid="${CSS.escape(frame.cid)}"]`)) return;
    const row = this.#row({ ...frame, userid: this.#me.id, ts: Date.now() }, "pending");
    if (preview) row.querySelector("img.picture, video")?.setAttribute("src", preview);
    this.#list.append(row);
    this.#scrollToBottom();
  }

  /** Take back the shown message `cid` (a held upload that is being sent after all). */
  removeLocal(cid) {
    this.#list.querySelector(`li[data-cid="${CSS.escape(cid)}"]:not([data-seq])`)?.remove();
  }

  /**
   * Our message `cid` changed state: sent (with its seq), pending again, or
   * failed: with a Retry button, or, refused for good (`final`), with the
   * reason instead, since a Retry could never pass.
   */
  setStatus({ cid, status, seq, ts, error, final }) {
    const row = this.#list.querySelector(`li[data-cid="${CSS.escape(cid)}"]`);
    if (row === null) return;
    if (status === "sent" && seq) {
      const dup = this.#list.querySelector(`li[data-seq="${seq}"]`);
      if (dup && dup !== row) dup.remove();
      row.dataset.seq = String(seq);
      row.remove();
      this.#insertBySeq(row, seq);
      if (ts) {
        row.querySelector(".msg-meta").firstChild.textContent = new Date(ts).toLocaleTimeString(
          [],
          { hour: "2-digit", minute: "2-digit" },
        );
      }
    }
    row.dataset.status = status;
    row.querySelector(".retry")?.remove();
    row.querySelector(".not-sent")?.remove();
    if (status === "failed" && final) {
      const note = document.createElement("span");
      note.className = "not-sent";
      note.textContent = `Not sent: ${error ?? "refused by the server"}`;
      row.querySelector(".msg-meta").append(note);
    } else if (status === "failed") {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "retry";
      retry.textContent = "Not sent · Retry";
      retry.title = error ?? "";
      retry.addEventListener("click", () => this.#handlers.onRetry?.(cid));
      row.querySelector(".msg-meta").append(retry);
    }
  }

  #row(msg, status) {
    const mine = msg.userid === this.#me.id;
    const sender = mine ? this.#me : this.#users.peek(msg.userid);
    const row = messageRow(msg, {
      mine,
      sender,
      showSender: msg.cmd === 11,
      status,
      handlers: { onContact: this.#handlers.onContact },
    });
    if (!mine && sender === undefined) {
      this.#users.get(msg.userid).then((user) => {
        if (!user) return;
        const img = row.querySelector("img.avatar");
        const avatar = siteUrl(user.avatar);
        if (img && avatar) img.src = avatar;
        const name = row.querySelector(".msg-sender");
        if (name) name.textContent = user.nickname;
      }).catch(() => {});
    }
    return row;
  }

  /** Insert a stored message in seq order, once. */
  #place(msg, status) {
    if (this.#list.querySelector(`li[data-seq="${msg.seq}"]`)) return;
    if (msg.cid) {
      const local = this.#list.querySelector(`li[data-cid="${CSS.escape(msg.cid)}"]`);
      if (local && msg.userid === this.#me.id) {
        this.setStatus({ cid: msg.cid, status: "sent", seq: msg.seq, ts: msg.ts });
        return;
      }
    }
    this.#oldest = Math.min(this.#oldest, msg.seq);
    this.#insertBySeq(this.#row(msg, status), msg.seq);
  }

  #insertBySeq(row, seq) {
    for (const child of this.#list.children) {
      const s = Number(child.dataset.seq);
      if (!child.dataset.seq || s > seq) {
        this.#list.insertBefore(row, child);
        return;
      }
    }
    this.#list.append(row);
  }

  async #loadOlder() {
    if (!this.#target || !this.#hasMore || this.#loading) return;
    this.#loading = true;
    const epoch = this.#epoch;
    this.#status.textContent = "Loading earlier messages…";
    try {
      const page = await get("/message/history", {
        conv: this.#target.conv,
        before: this.#oldest,
        limit: PAGE,
      });
      if (epoch !== this.#epoch) return;
      const before = this.#scroller.scrollHeight - this.#scroller.scrollTop;
      for (const msg of page.rows) this.#place(msg, "sent");
      this.#scroller.scrollTop = this.#scroller.scrollHeight - before;
      this.#hasMore = page.rows.length === PAGE && this.#oldest > 1;
      this.#status.textContent = this.#hasMore ? "" : "Start of the conversation";
    } catch (e) {
      toast(e.message);
      this.#status.textContent = "";
    } finally {
      this.#loading = false;
    }
  }

  #nearBottom() {
    const s = this.#scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  #scrollToBottom() {
    requestAnimationFrame(() => {
      this.#scroller.scrollTop = this.#scroller.scrollHeight;
    });
  }
}
