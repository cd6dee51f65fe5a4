// The chat index page: three tabs (friends, groups, me), conversation rows
// with unread counts and last messages, the connection, and the chat window.
import { ApiError, get, post, upload } from "./api.js";
import { byId, confirmDialog, el, promptDialog, shortTime, siteUrl, toast } from "./dom.js";
import { ChatConnection } from "./connection.js";
import { ConvState } from "./conv_state.js";
import { ChatWindow } from "./chat_window.js";
import { findUser, setupComposer } from "./composer.js";
import { newCid, Outbox } from "./outbox.js";
import { image } from "./render.js";
import { Uploads } from "./uploads.js";

const STATE_TEXT = {
  connecting: "Connecting…",
  online: "Online",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  closed: "Disconnected",
};

const myId = Number(document.querySelector('meta[name="lanchat-user"]')?.content);
if (!(myId > 0)) location.assign("/user/login.shtml");

const me = { id: myId, nickname: "", avatar: "" };
const friends = new Map();
const groups = new Map();
const userCache = new Map();
/** Look-ups under way, by user id: one request per user however many of their rows render. */
const lookups = new Map();
const state = new ConvState(myId);

/** 1:1 conversation key, as the server makes it. */
function userConv(a, b) {
  return `u:${Math.min(a, b)}:${Math.max(a, b)}`;
}

const users = {
  peek(id) {
    return id === me.id ? me : friends.get(id) ?? userCache.get(id);
  },
  async get(id) {
    const known = users.peek(id);
    if (known) return known;
    // The server rate-limits look-ups: a catch-up of 50 rows from one group
    // member must cost one, not 50 at once.
    let lookup = lookups.get(id);
    if (lookup === undefined) {
      lookup = findUser(id).then((user) => {
        userCache.set(id, user);
        return user;
      }).finally(() => lookups.delete(id));
      lookups.set(id, lookup);
    }
    return await lookup;
  },
};

const conn = new ChatConnection({
  url: `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/chat`,
  catchUp: () => state.lastSeqs(),
});
const outbox = new Outbox(conn);
const chat = new ChatWindow({
  me,
  users,
  handlers: {
    onClose: (conv, hadFocus) => {
      renderLists();
      // Back where the user came from: the conversation's row.
      if (hadFocus && conv !== undefined) {
        const rows = document.querySelectorAll(`button[data-conv="${CSS.escape(conv)}"]`);
        [...rows].find((row) => row.offsetParent !== null)?.focus();
      }
    },
    onRetry: (cid) => uploads.retry(cid) || outbox.retry(cid),
    unsent: (conv) => [...uploads.unsent(conv), ...outbox.unsent(conv)],
    onContact: (card) => openContact(card),
  },
});

// ---- tabs ---------------------------------------------------------------
const TITLES = { friends: "Friends", groups: "Groups", me: "Me" };
function showTab(name) {
  for (const button of document.querySelectorAll(".tabbar button")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  for (const tab of ["friends", "groups", "me"]) byId(`tab-${tab}`).hidden = tab !== name;
  byId("tab-title").textContent = TITLES[name];
}
for (const button of document.querySelectorAll(".tabbar button")) {
  button.addEventListener("click", () => showTab(button.dataset.tab));
}

// ---- lists --------------------------------------------------------------
function conversationRow({ conv, name, avatar, sub, open, fallback }) {
  const st = state.get(conv);
  const unread = st?.unread ?? 0;
  const button = el(
    "button",
    { type: "button", className: "row", data: { conv } },
    image(avatar, { className: "avatar" }, fallback),
    el(
      "span",
      { className: "row-main" },
      el(
        "span",
        { className: "row-top" },
        el("span", { className: "row-name" }, name),
        el("span", { className: "row-time" }, shortTime(st?.ts)),
      ),
      el(
        "span",
        { className: "row-sub" },
        el("span", { className: "preview" }, st?.preview || sub),
        unread > 0 ? el("span", { className: "badge", data: { unread } }, String(unread)) : null,
      ),
    ),
  );
  if (chat.target?.conv === conv) button.classList.add("active");
  button.addEventListener("click", open);
  return { el: el("li", {}, button), ts: st?.ts ?? 0, unread };
}

/**
 * Put `rows` in list `listId`, newest first. A row that had the keyboard
 * focus keeps it: its new copy is focused, wherever it moved.
 */
function fill(listId, rows, emptyText) {
  rows.sort((a, b) => b.ts - a.ts);
  const list = byId(listId);
  const focused = list.contains(document.activeElement)
    ? document.activeElement.dataset.conv
    : undefined;
  list.replaceChildren(...rows.map((r) => r.el));
  if (rows.length === 0) list.append(el("li", { className: "empty" }, emptyText));
  if (focused !== undefined) {
    list.querySelector(`button[data-conv="${CSS.escape(focused)}"]`)?.focus();
  }
  return rows.reduce((n, r) => n + r.unread, 0);
}

function setBadge(id, n) {
  const badge = byId(id);
  badge.hidden = n === 0;
  badge.textContent = n > 99 ? "99+" : String(n);
}

function renderLists() {
  const friendRows = [...friends.values()].map((f) =>
    conversationRow({
      conv: userConv(me.id, f.id),
      name: f.nickname,
      avatar: f.avatar,
      sub: f.memo || `Number ${f.id}`,
      open: () => openFriend(f),
    })
  );
  setBadge("badge-friends", fill("friends", friendRows, "No friends yet: add one by number"));
  const groupRows = [...groups.values()].map((g) =>
    conversationRow({
      conv: `g:${g.id}`,
      name: `${g.name} (${g.id})`,
      avatar: g.icon,
      sub: g.memo || `Group number ${g.id}`,
      open: () => openGroup(g),
      fallback: "/asset/images/group.svg",
    })
  );
  setBadge("badge-groups", fill("groups", groupRows, "No groups yet: join one or create one"));
}

function openFriend(f) {
  const conv = userConv(me.id, f.id);
  state.markRead(conv);
  chat.open({ conv, cmd: 10, dstid: f.id, title: f.nickname });
  renderLists();
}

function openGroup(g) {
  const conv = `g:${g.id}`;
  state.markRead(conv);
  chat.open({ conv, cmd: 11, dstid: g.id, title: g.name });
  renderLists();
}

/** Waits between tries of a conversation's first history read. */
const SEED_RETRY_MS = [500, 2000];

/**
 * First sight of `conv` on this device: its newest message counts as read.
 * Tried again on failure, since a conversation seeded empty is replayed by
 * the catch-up from seq 1 with every message unread.
 */
async function seed(conv) {
  for (let attempt = 0;; attempt++) {
    if (state.get(conv)) return;
    try {
      const page = await get("/message/history", { conv, limit: 1 });
      state.seed(conv, page.rows.at(-1));
      return;
    } catch (e) {
      if (e.status === 401 || attempt >= SEED_RETRY_MS.length) {
        state.seed(conv, undefined);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, SEED_RETRY_MS[attempt]));
    }
  }
}

async function loadContacts() {
  const [f, g] = await Promise.all([get("/contact/loadfriend"), get("/contact/loadcommunity")]);
  friends.clear();
  for (const u of f.rows) friends.set(u.id, u);
  groups.clear();
  for (const x of g.rows) groups.set(x.id, x);
  await Promise.all([
    ...f.rows.map((u) => seed(userConv(me.id, u.id))),
    ...g.rows.map((x) => seed(`g:${x.id}`)),
  ]);
  renderLists();
}

async function loadMe() {
  const res = await get("/user/find", { id: me.id });
  Object.assign(me, res.data);
  byId("me-name").textContent = me.nickname;
  byId("me-number").textContent = `My number: ${me.id}`;
  byId("me-memo").textContent = me.memo ?? "";
  byId("me-avatar").src = siteUrl(me.avatar) ?? "/asset/images/avatar0.svg";
}

// ---- actions --------------------------------------------------------------
/**
 * A contact card was tapped: a friend's opens their chat; anyone else is
 * added only after the user says so (a card is someone else's suggestion).
 */
async function openContact(card) {
  const id = Number(card.content);
  if (!Number.isSafeInteger(id) || id < 1) return;
  if (id === me.id) {
    toast("That is your own card");
    return;
  }
  const friend = friends.get(id);
  if (friend !== undefined) {
    openFriend(friend);
    return;
  }
  const name = card.memo || "this contact";
  const yes = await confirmDialog({
    title: "Add a friend",
    text: `Add ${name} (number ${id}) as a friend?`,
    okText: "Add",
  });
  if (yes) await addFriend(String(id));
}

async function addFriend(number) {
  const id = number ??
    await promptDialog({ title: "Add a friend", label: "Their number", okText: "Add" });
  if (id === undefined) return;
  try {
    const res = await post("/contact/addfriend", { dstid: id });
    toast(`${res.msg}: ${res.data.nickname}`);
    await loadContacts();
    showTab("friends");
  } catch (e) {
    toast(e instanceof ApiError ? e.message : "Cannot reach the server");
  }
}

async function joinGroup() {
  const id = await promptDialog({ title: "Join a group", label: "Group number", okText: "Join" });
  if (id === undefined) return;
  try {
    const res = await post("/contact/joincommunity", { dstid: id });
    toast(`${res.msg}: ${res.data.name}`);
    await loadContacts();
    showTab("groups");
  } catch (e) {
    toast(e instanceof ApiError ? e.message : "Cannot reach the server");
  }
}

byId("add-friend").addEventListener("click", () => addFriend());
byId("me-add-friend").addEventListener("click", () => addFriend());
byId("join-group").addEventListener("click", joinGroup);
byId("me-join-group").addEventListener("click", joinGroup);
byId("me-avatar-file").addEventListener("change", async (e) => {
  const file = e.target.files?.[0];
  e.target.value = "";
  if (!file) return;
  try {
    const url = await upload(file, "avatar");
    await post("/user/update", { avatar: url });
    await loadMe();
    toast("Avatar updated");
  } catch (err) {
    toast(err.message);
  }
});
byId("logout").addEventListener("click", async () => {
  conn.stop();
  try {
    await post("/user/logout");
  } catch {
    // The cookie is dropped by the server; nothing else to undo here.
  }
  location.assign("/user/login.shtml");
});

// ---- sending -------------------------------------------------------------
/** Send `fields` to `target` (the open conversation unless an upload took it earlier). */
function send(fields, target = chat.target) {
  if (!target) return;
  const frame = {
    cmd: target.cmd,
    dstid: target.dstid,
    media: fields.media,
    content: fields.content ?? "",
    pic: fields.pic ?? "",
    url: fields.url ?? "",
    memo: fields.memo ?? "",
    amount: fields.amount ?? 0,
    cid: newCid(),
  };
  chat.showLocal({ ...frame, conv: target.conv });
  outbox.send(frame, target.conv);
}
const uploads = new Uploads({
  upload,
  send,
  newCid,
  onWait: (seconds) => toast(`Server busy: trying again in ${seconds} s…`, seconds * 1000),
});
uploads.addEventListener("held", (event) => {
  const { conv, frame, preview, error } = event.detail;
  chat.showLocal({ ...frame, conv }, preview);
  chat.setStatus({ cid: frame.cid, status: "failed", error });
  toast(`${frame.media === 3 ? "Voice not sent" : "Not sent"}: ${error}`);
});
uploads.addEventListener("status", (event) => {
  chat.setStatus(event.detail);
  if (event.detail.status === "failed") toast(`Not sent: ${event.detail.error}`);
});
uploads.addEventListener("done", (event) => chat.removeLocal(event.detail.cid));
uploads.addEventListener("dropped", (event) => {
  const { cid, media, error } = event.detail;
  if (cid !== undefined) chat.removeLocal(cid);
  toast(`${media === 3 ? "Voice not sent" : "Not sent"}: ${error}`);
});
setupComposer({
  send,
  sendFile: (file, options) => options.target && uploads.send(file, options),
  friends: () => [...friends.values()],
  target: () => chat.target,
});
// Unsent messages and held uploads live only in this page: leaving it would drop them.
addEventListener("beforeunload", (event) => {
  if (outbox.size > 0 || uploads.size > 0) event.preventDefault();
});

// ---- frames --------------------------------------------------------------
function onMessage(msg) {
  const mine = msg.userid === me.id;
  const open = chat.isOpen(msg.conv);
  const fresh = state.record(msg, { mine, open });
  chat.receive(msg);
  const known = msg.cmd === 11 ? groups.has(msg.dstid) : friends.has(mine ? msg.dstid : msg.userid);
  if (!known) {
    loadContacts().catch(() => {});
  } else if (fresh) {
    renderLists();
  }
}

conn.addEventListener("frame", (event) => {
  const frame = event.detail;
  switch (frame.cmd) {
    case 10:
    case 11:
      onMessage(frame);
      break;
    case 20: {
      const sent = outbox.acked(frame);
      if (sent) state.acked(frame.conv, frame.seq, { ...sent, ts: frame.ts });
      renderLists();
      break;
    }
    case 21:
      if (frame.cid) outbox.refused(frame);
      else toast(frame.msg);
      break;
    case 31:
      renderLists();
      break;
  }
});
outbox.addEventListener("status", (event) => chat.setStatus(event.detail));
conn.addEventListener("state", (event) => {
  for (const id of ["conn", "chat-conn"]) {
    const node = byId(id);
    node.dataset.state = event.detail;
    node.textContent = STATE_TEXT[event.detail] ?? event.detail;
  }
});
conn.addEventListener("unauthorized", () => location.assign("/user/login.shtml"));
// A refused upgrade looks like a network error; a REST call tells the two apart
// (api.js sends a 401 to the login page).
conn.addEventListener("refused", () => get("/user/find", { id: me.id }).catch(() => {}));
document.addEventListener("visibilitychange", () => {
  const conv = chat.target?.conv;
  if (document.visibilityState === "visible" && conv) {
    state.markRead(conv);
    renderLists();
  }
});

const notice = sessionStorage.getItem("lanchat_notice");
if (notice) {
  sessionStorage.removeItem("lanchat_notice");
  toast(notice, 4000);
}
if (location.hash === "#groups") showTab("groups");

try {
  await Promise.all([loadMe(), loadContacts()]);
} catch (e) {
  toast(e.message);
}
conn.start();
