// The input bar: text, stickers, photo / camera / video uploads, contact
// cards, links and hold-to-talk voice. It only builds message fields and
// hands them to `send(fields)`, or with a file or recording to
// `sendFile(file, …)`; what is shown is decided elsewhere.
import { get } from "./api.js";
import { byId, el, promptDialog, toast } from "./dom.js";
import { image } from "./render.js";
import { canRecord, holdToTalk } from "./recorder.js";

const STICKERS = "/asset/stickers/";

/**
 * Wire the composer. `send(fields)` sends a message to the open chat;
 * `sendFile(file, {name, fields, target})` uploads a file or recording and
 * then sends `fields` with its URL (keeping it for Retry when the upload
 * fails); `friends()` lists friends for contact cards; `target()` is the open
 * conversation, taken when a file or recording is picked, so an upload that
 * ends after the user opened another chat still goes where it was meant to.
 */
export function setupComposer({ send, sendFile, friends, target }) {
  const form = byId("composer");
  const text = byId("text");
  const sendButton = byId("send");
  const more = byId("more-toggle");
  const hold = byId("hold");
  const stickerPanel = byId("sticker-panel");
  const morePanel = byId("more-panel");

  function syncButtons() {
    const has = text.value.trim() !== "";
    sendButton.hidden = !has || !hold.hidden;
    more.hidden = has && hold.hidden;
  }
  text.addEventListener("input", syncButtons);
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const content = text.value.trim();
    if (content === "") return;
    send({ media: 1, content });
    text.value = "";
    syncButtons();
    text.focus();
  });

  function toggle(panel) {
    const show = panel.hidden;
    stickerPanel.hidden = true;
    morePanel.hidden = true;
    panel.hidden = !show;
  }
  byId("emoji-toggle").addEventListener("click", () => toggle(stickerPanel));
  more.addEventListener("click", () => toggle(morePanel));

  // Voice: shown only where the browser can record.
  const voiceToggle = byId("voice-toggle");
  if (canRecord()) {
    voiceToggle.addEventListener("click", () => {
      const voice = hold.hidden;
      hold.hidden = !voice;
      text.hidden = voice;
      voiceToggle.querySelector("img").src = `/asset/icons/${voice ? "keyboard" : "mic"}.svg`;
      voiceToggle.setAttribute("aria-label", voice ? "Keyboard" : "Voice");
      syncButtons();
    });
    holdToTalk(hold, (blob, seconds, name) => {
      const file = new File([blob], name, { type: blob.type });
      sendFile(file, { name, fields: { media: 3, amount: seconds }, target: target() });
    });
  } else {
    voiceToggle.hidden = true;
  }

  loadStickers(stickerPanel, (sticker) => {
    stickerPanel.hidden = true;
    send({ media: 6, content: sticker.name, url: STICKERS + sticker.file });
  });

  function uploadInput(id, media) {
    const input = byId(id);
    input.addEventListener("change", () => {
      const file = input.files?.[0];
      input.value = "";
      if (!file) return;
      morePanel.hidden = true;
      toast("Uploading…", 1200);
      sendFile(file, { fields: { media }, target: target() });
    });
  }
  uploadInput("pick-photo", 4);
  uploadInput("pick-camera", 4);
  uploadInput("pick-video", 8);

  byId("send-card").addEventListener("click", async () => {
    morePanel.hidden = true;
    const friend = await pickFriend(friends());
    if (friend) {
      send({ media: 9, content: String(friend.id), pic: friend.avatar, memo: friend.nickname });
    }
  });
  byId("send-link").addEventListener("click", async () => {
    morePanel.hidden = true;
    const url = await promptDialog({
      title: "Share a link",
      label: "Address (http:// or https://)",
      inputMode: "url",
      okText: "Send",
    });
    if (url === undefined) return;
    if (!/^https?:\/\/\S+$/i.test(url)) {
      toast("Links must start with http:// or https://");
      return;
    }
    send({ media: 7, url, content: url });
  });
  syncButtons();
}

async function loadStickers(panel, onPick) {
  try {
    const res = await fetch(STICKERS + "info.json");
    const info = await res.json();
    for (const sticker of info.assets ?? []) {
      const button = el(
        "button",
        { type: "button", title: sticker.name },
        image(STICKERS + sticker.file, {}, ""),
      );
      button.dataset.sticker = sticker.name;
      button.addEventListener("click", () => onPick(sticker));
      panel.append(button);
    }
  } catch {
    panel.append(el("p", { className: "empty" }, "Stickers unavailable"));
  }
}

function pickFriend(list) {
  return new Promise((resolve) => {
    let chosen;
    const dialog = el("dialog", {}, el("h3", {}, "Send a contact"));
    const ul = el("ul", { className: "list" });
    for (const friend of list) {
      const row = el(
        "button",
        { type: "button", className: "row" },
        image(friend.avatar, { className: "avatar" }),
        el("span", { className: "row-name" }, friend.nickname),
      );
      row.addEventListener("click", () => {
        chosen = friend;
        dialog.close();
      });
      ul.append(el("li", {}, row));
    }
    if (list.length === 0) ul.append(el("li", { className: "empty" }, "No friends yet"));
    const cancel = el("button", { type: "button", className: "btn" }, "Cancel");
    cancel.addEventListener("click", () => dialog.close());
    dialog.append(ul, el("menu", {}, cancel));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(chosen);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Fetch a user's public profile (used for senders who are not friends). */
export async function findUser(id) {
  return (await get("/user/find", { id })).data;
}
