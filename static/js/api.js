// REST calls. The login lives in the HttpOnly cookie `lanchat_token`, which
// the browser sends by itself: no token in URLs, storage or scripts.

/** A refusal from the server: `{code:-1,msg}` or a failed request. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

const LOGIN_PAGE = "/user/login.shtml";

async function envelope(res) {
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(`Request failed (${res.status})`, res.status);
  }
  if (
    res.status === 401 && location.pathname !== LOGIN_PAGE &&
    location.pathname !== "/user/register.shtml"
  ) {
    location.assign(LOGIN_PAGE);
  }
  if (body.code !== 0) throw new ApiError(body.msg || `Request failed (${res.status})`, res.status);
  return body;
}

/** POST form fields; resolves with the envelope `{code,msg,data}` or throws ApiError. */
export async function post(path, fields = {}) {
  const res = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(
      Object.entries(fields).map(([k, v]) => [k, v === undefined ? "" : String(v)]),
    ),
  });
  return await envelope(res);
}

/** GET with query parameters; resolves with the envelope. */
export async function get(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined) url.searchParams.set(k, String(v));
  }
  const res = await fetch(url, { credentials: "same-origin" });
  return await envelope(res);
}

/** The longest `Retry-After` an upload waits out by itself, seconds. */
const UPLOAD_RETRY_MAX_S = 10;

/**
 * Upload one file or blob; resolves with its `/mnt/<name>` URL. A busy
 * server (429 or 503 with a short `Retry-After`, e.g. the node's uploads at
 * their bound) is tried once more after the wait; `onWait(seconds)` is told.
 */
export async function upload(file, name = "upload", onWait = () => {}) {
  for (let attempt = 0;; attempt++) {
    const form = new FormData();
    form.append("file", file, file.name || name);
    const res = await fetch("/attach/upload", {
      method: "POST",
      credentials: "same-origin",
      body: form,
    });
    const wait = Number(res.headers.get("retry-after"));
    const busy = res.status === 429 || res.status === 503;
    if (attempt === 0 && busy && wait > 0 && wait <= UPLOAD_RETRY_MAX_S) {
      await res.body?.cancel();
      onWait(wait);
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      continue;
    }
    return (await envelope(res)).data;
  }
}
