// Small DOM helpers. Text always goes in through textContent, never innerHTML.

/**
 * Build an element. `props` sets properties (className, type, …), `dataset.*`
 * via `data`, attributes via `attrs`; children are nodes or strings (as text).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { data, attrs, ...rest } = props;
  for (const [key, value] of Object.entries(rest)) {
    if (value !== undefined && value !== null) node[key] = value;
  }
  for (const [key, value] of Object.entries(data ?? {})) node.dataset[key] = String(value);
  for (const [key, value] of Object.entries(attrs ?? {})) node.setAttribute(key, String(value));
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** The element with `id`; throws when the page lacks it. */
export function byId(id) {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`Missing element #${id}`);
  return node;
}

/**
 * A URL safe to put in src/href: a same-site path ("/x", not "//x") or an
 * http(s) URL. Anything else (javascript:, data:, …) gives undefined.
 */
export function safeUrl(value) {
  if (typeof value !== "string" || value === "") return undefined;
  if (/^\/(?![/\\])/.test(value)) return value;
  if (/^https?:\/\//i.test(value)) return value;
  return undefined;
}

/**
 * Whether a checked URL is on this site: the page's CSP loads images, audio
 * and video only from here, so anything else can only be linked to.
 */
export function sameSite(url, base = location.href) {
  try {
    return new URL(url, base).origin === new URL(base).origin;
  } catch {
    return false;
  }
}

/** `value` as a URL the page may load (checked, on this site), or undefined. */
export function siteUrl(value) {
  const url = safeUrl(value);
  return url !== undefined && sameSite(url) ? url : undefined;
}

/** Show a short message at the bottom of the screen. */
export function toast(text, ms = 2500) {
  const node = el("div", { className: "toast", role: "status" }, String(text));
  document.body.append(node);
  setTimeout(() => node.remove(), ms);
}

/** Time of day for today, else the date. */
export function shortTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return d.toLocaleDateString([], { month: "short", day: "numeric" });
}

/**
 * A modal form: `title`, the `body` nodes, Cancel and `okText`. Resolves
 * with `onOk()` when confirmed, `cancelled` otherwise; `focus` gets focus.
 */
function modal({ title, body, okText, onOk, cancelled, focus }) {
  return new Promise((resolve) => {
    const form = el(
      "form",
      { method: "dialog" },
      el("h3", {}, title),
      ...body,
      el(
        "menu",
        {},
        el("button", { type: "button", className: "btn", value: "cancel" }, "Cancel"),
        el("button", { type: "submit", className: "btn primary", value: "ok" }, okText),
      ),
    );
    const dialog = el("dialog", { className: "prompt" }, form);
    let result = cancelled;
    form.addEventListener("submit", () => {
      result = onOk();
    });
    form.querySelector('button[value="cancel"]').addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    focus?.focus();
  });
}

/** Ask yes or no in a modal dialog; resolves with true for `okText`, false when cancelled. */
export function confirmDialog({ title, text, okText = "OK" }) {
  return modal({ title, body: [el("p", {}, text)], okText, onOk: () => true, cancelled: false });
}

/**
 * Ask for one value in a modal dialog; resolves with the trimmed text, or
 * undefined when cancelled.
 */
export function promptDialog({ title, label, inputMode = "numeric", okText = "OK" }) {
  const input = el("input", { name: "value", required: true, inputMode, autocomplete: "off" });
  return modal({
    title,
    body: [el("label", { className: "field" }, el("span", {}, label), input)],
    okText,
    onOk: () => input.value.trim() || undefined,
    cancelled: undefined,
    focus: input,
  });
}
