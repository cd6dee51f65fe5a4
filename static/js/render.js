// One message as DOM: media 1-9 (and a fallback for anything else). Every
// piece of user data goes in as text or as a checked URL.
import { el, safeUrl, sameSite, shortTime, siteUrl } from "./dom.js";

const DEFAULT_AVATAR = "/asset/images/avatar0.svg";

/** An <img> whose src is a checked URL of this site (or the fallback: the CSP blocks others). */
export function image(url, props = {}, fallback = DEFAULT_AVATAR) {
  const img = el("img", { alt: "", loading: "lazy", ...props });
  const src = siteUrl(url) ?? fallback;
  if (src) img.src = src;
  img.addEventListener("error", () => {
    if (fallback && !img.src.endsWith(fallback)) img.src = fallback;
  }, { once: true });
  return img;
}

function link(url, props, ...children) {
  const href = safeUrl(url);
  const a = el("a", { className: "card", ...props }, ...children);
  if (href) {
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
  }
  return a;
}

let playing;

function voice(msg) {
  const secs = Math.max(1, Number(msg.amount) || 1);
  const button = el(
    "button",
    { type: "button", className: "voice", title: "Play" },
    el("img", { className: "ico", src: "/asset/icons/speaker.svg", alt: "" }),
    el("span", {}, `${secs}"`),
  );
  button.style.width = `${Math.min(12, 4 + secs / 3)}rem`;
  const src = safeUrl(msg.url);
  button.addEventListener("click", () => {
    if (!src) return;
    if (playing && !playing.paused) playing.pause();
    playing = new Audio(src);
    playing.play().catch(() => {});
  });
  button.setAttribute("aria-label", `Play voice message, ${secs} seconds`);
  return el("div", { className: "bubble" }, button);
}

/** A photo or video kept on another site: the page may not load it, so it is a link. */
function elsewhere(kind, url) {
  return link(
    url,
    {},
    el("div", { className: "card-title" }, `${kind} on ${new URL(url).host}`),
    el("div", { className: "card-memo" }, url),
  );
}

/** The bubble for `msg`'s media type. `handlers.onContact(card)` for contact cards. */
export function bubble(msg, handlers = {}) {
  switch (msg.media) {
    case 1:
      return el("div", { className: "bubble" }, msg.content);
    case 2:
      return link(
        msg.url,
        {},
        el("div", { className: "card-title" }, msg.content || "News"),
        msg.memo ? el("div", { className: "card-memo" }, msg.memo) : null,
        msg.pic ? image(msg.pic, {}, "") : null,
      );
    case 3:
      return voice(msg);
    case 4: {
      const src = safeUrl(msg.url);
      if (src && !sameSite(src)) return elsewhere("Photo", src);
      const a = el(
        "a",
        { className: "bubble media", attrs: { "aria-label": "Photo" } },
        image(msg.url, { className: "picture" }, ""),
      );
      if (src) {
        a.href = src;
        a.target = "_blank";
        a.rel = "noopener";
      }
      return a;
    }
    case 5: {
      const yuan = ((Number(msg.amount) || 0) / 100).toFixed(2);
      return el(
        "div",
        { className: "card redpacket" },
        el("div", { className: "card-title" }, msg.memo || "Best wishes"),
        el("div", { className: "card-memo" }, `¥${yuan}`),
        el("div", { className: "card-foot" }, "Red packet"),
      );
    }
    case 6:
      if (safeUrl(msg.url)) {
        return el(
          "div",
          { className: "bubble media" },
          image(msg.url, { className: "sticker", title: msg.content }, ""),
        );
      }
      return el("div", { className: "bubble emoji" }, msg.content);
    case 7:
      return link(
        msg.url,
        {},
        el("div", { className: "card-title" }, msg.content || msg.url),
        el("div", { className: "card-memo" }, msg.url),
      );
    case 8: {
      const src = safeUrl(msg.url);
      if (src && !sameSite(src)) return elsewhere("Video", src);
      const video = el("video", { controls: true, preload: "metadata", playsInline: true });
      if (src) video.src = src;
      const poster = safeUrl(msg.pic);
      if (poster) video.poster = poster;
      return el("div", { className: "bubble media" }, video);
    }
    case 9: {
      const card = el(
        "button",
        { type: "button", className: "card contact" },
        image(msg.pic, { className: "avatar" }),
        el(
          "div",
          {},
          el("div", { className: "card-title" }, msg.memo || "Contact"),
          el("div", { className: "card-memo" }, `Number ${msg.content}`),
        ),
      );
      card.addEventListener("click", () => handlers.onContact?.(msg));
      return card;
    }
    default:
      return el("div", { className: "bubble" }, msg.content || "[Unsupported message]");
  }
}

/**
 * A full message row. `sender` is `{nickname, avatar}`; `showSender` for
 * group chats. The row carries data-seq / data-cid and data-status.
 */
export function messageRow(msg, { mine, sender, showSender, status, handlers }) {
  const meta = el("div", { className: "msg-meta" }, shortTime(msg.ts || Date.now()));
  const row = el(
    "li",
    { className: mine ? "msg mine" : "msg" },
    image(sender?.avatar, { className: "avatar" }),
    el(
      "div",
      { className: "msg-body" },
      showSender && !mine
        ? el("div", { className: "msg-sender" }, sender?.nickname ?? `#${msg.userid}`)
        : null,
      bubble(msg, handlers),
      meta,
    ),
  );
  if (msg.seq) row.dataset.seq = String(msg.seq);
  if (msg.cid) row.dataset.cid = msg.cid;
  row.dataset.status = status ?? "sent";
  return row;
}
