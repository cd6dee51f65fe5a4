/** /attach/upload and /mnt/<name>: limits, content allow-list, safe serving (S9). */

import { deepStrictEqual, match, ok, rejects, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { AbuseLimits } from "../lib/abuse_limits.ts";
import { parseConfig } from "../lib/config.ts";
import { UploadGate } from "../lib/upload_gate.ts";
import { call, makeTestApp, PNG, register } from "./_http_helpers.ts";

const HTML = new TextEncoder().encode("<!doctype html><script>alert(document.cookie)</script>");
const SVG = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>');

function form(
  file: Uint8Array<ArrayBuffer> | string | undefined,
  name = "a.png",
  extra: Record<string, string> = {},
): FormData {
  const fd = new FormData();
  if (typeof file === "string") fd.append("file", file);
  else if (file !== undefined) fd.append("file", new File([file], name));
  for (const [k, v] of Object.entries(extra)) fd.append(k, v);
  return fd;
}

/** `size` bytes that start as a PNG (enough for the content sniffer), zeros after. */
function pngOf(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  bytes.set(PNG);
  return bytes;
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names;
}

/** Open file descriptors of this process (`ls /proc/<pid>/fd` through sh). */
async function openFds(): Promise<number> {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", `ls /proc/${Deno.pid}/fd | wc -l`],
    stdout: "piped",
  }).output();
  return Number(new TextDecoder().decode(stdout).trim());
}

Deno.test("/attach/upload refuses a missing or bad login before reading the body", async (t) => {
  await using app = await makeTestApp();
  for (
    const [name, headers] of [
      ["no token", {}],
      ["a bad token", { authorization: "Bearer nope" }],
    ] as const
  ) {
    await t.step(name, async () => {
      // 20 MiB that the server must not read: it answers after the first chunk at most.
      let pulled = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (pulled >= 20 * 1024 * 1024) return controller.close();
          pulled += 64 * 1024;
          controller.enqueue(new Uint8Array(64 * 1024));
        },
      });
      const res = await app.app.fetch(
        new Request("http://127.0.0.1/attach/upload", {
          method: "POST",
          headers: { ...headers, "content-type": "multipart/form-data; boundary=x" },
          body,
          duplex: "half",
        } as RequestInit),
      );
      strictEqual(res.status, 401);
      strictEqual((await res.json()).code, -1);
      ok(pulled <= 4 * 64 * 1024, `${pulled} bytes read`);
    });
  }
  await t.step("a token in the query string is read first too", async () => {
    const { token } = await register(app.app, "13800000009");
    const r = await call(app.app, `/attach/upload?token=${encodeURIComponent(token)}`, {
      body: form(PNG),
    });
    strictEqual(r.status, 200);
    match(r.body.data, /^\/mnt\//);
  });
});

Deno.test("HEAD /mnt/<name> and /asset/<file> answer the headers without opening the file", async () => {
  await using t = await makeTestApp();
  const { token } = await register(t.app, "13800000008");
  const r = await call(t.app, "/attach/upload", { body: form(PNG), token });
  strictEqual(r.status, 200);
  const before = await openFds();
  for (let i = 0; i < 100; i++) {
    for (
      const [path, type, length] of [
        [r.body.data, "image/png", PNG.length],
        ["/asset/css/app.css", "text/css; charset=utf-8", 7],
      ] as const
    ) {
      const res = await t.app.fetch(new Request(`http://127.0.0.1${path}`, { method: "HEAD" }));
      strictEqual(res.status, 200, path);
      strictEqual(res.headers.get("content-type"), type);
      strictEqual(res.headers.get("content-length"), String(length));
      strictEqual(await res.text(), "");
    }
  }
  const after = await openFds();
  // Each HEAD used to leave its file open until a garbage collection: +200.
  ok(after - before < 20, `${after - before} more open files`);
  const missing = await t.app.fetch(
    new Request(`http://127.0.0.1/mnt/${"0".repeat(32)}.png`, { method: "HEAD" }),
  );
  strictEqual(missing.status, 404);
});

Deno.test("/mnt/<name> answers a byte range with 206 (Safari plays media only so), 416 past the end", async () => {
  await using t = await makeTestApp();
  const { token } = await register(t.app, "13800000007");
  const r = await call(t.app, "/attach/upload", { body: form(PNG), token });
  strictEqual(r.status, 200);
  const get = (range?: string) =>
    t.app.fetch(
      new Request(`http://127.0.0.1${r.body.data}`, {
        headers: range === undefined ? {} : { range },
      }),
    );
  const whole = await get();
  strictEqual(whole.status, 200);
  strictEqual(whole.headers.get("accept-ranges"), "bytes");
  deepStrictEqual(new Uint8Array(await whole.arrayBuffer()), PNG);
  const part = await get("bytes=2-9");
  strictEqual(part.status, 206);
  strictEqual(part.headers.get("content-range"), `bytes 2-9/${PNG.length}`);
  strictEqual(part.headers.get("content-length"), "8");
  strictEqual(part.headers.get("content-type"), "image/png");
  strictEqual(part.headers.get("x-content-type-options"), "nosniff");
  deepStrictEqual(new Uint8Array(await part.arrayBuffer()), PNG.slice(2, 10));
  const tail = await get("bytes=-4");
  strictEqual(tail.status, 206);
  deepStrictEqual(new Uint8Array(await tail.arrayBuffer()), PNG.slice(-4));
  const past = await get(`bytes=${PNG.length}-`);
  strictEqual(past.status, 416);
  strictEqual(past.headers.get("content-range"), `bytes */${PNG.length}`);
  strictEqual(await past.text(), "");
  const several = await get("bytes=0-1,4-5");
  strictEqual(several.status, 200, "several ranges: the whole file");
  deepStrictEqual(new Uint8Array(await several.arrayBuffer()), PNG);
  // A range read that is dropped half way closes its file (no leak per cancelled video seek).
  const before = await openFds();
  for (let i = 0; i < 50; i++) await (await get("bytes=1-")).body?.cancel();
  ok((await openFds()) - before < 10);
});

Deno.test("/attach/upload stores a png under a random name and /mnt serves it safely", async () => {
  await using t = await makeTestApp();
  const { id, token } = await register(t.app, "13800000001");
  const r = await call(t.app, "/attach/upload", {
    body: form(PNG, "x.html", { filetype: ".html" }),
    token,
  });
  strictEqual(r.status, 200);
  strictEqual(r.body.code, 0);
  strictEqual(r.body.msg, "");
  match(r.body.data, /^\/mnt\/[0-9a-f]{32}\.png$/);
  const name = r.body.data.slice("/mnt/".length);
  deepStrictEqual(await listDir(t.uploadsDir), [name]);
  const meta = await t.store.findAttachment(name);
  deepStrictEqual({ ...meta, createdAt: 0 }, {
    name,
    ownerId: id,
    mime: "image/png",
    size: PNG.length,
    createdAt: 0,
  });
  const res = await t.app.fetch(new Request(`http://127.0.0.1${r.body.data}`));
  strictEqual(res.status, 200);
  strictEqual(res.headers.get("content-type"), "image/png");
  strictEqual(res.headers.get("x-content-type-options"), "nosniff");
  strictEqual(res.headers.get("content-security-policy"), "default-src 'none'; sandbox");
  deepStrictEqual(new Uint8Array(await res.arrayBuffer()), PNG);
});

Deno.test("S9: html and svg uploads are refused whatever their name or filetype", async (t) => {
  await using h = await makeTestApp();
  const { token } = await register(h.app, "13800000001");
  const cases = [
    { name: "html as .html", body: form(HTML, "x.html") },
    { name: "html named .png", body: form(HTML, "x.png", { filetype: ".png" }) },
    { name: "svg", body: form(SVG, "x.svg", { filetype: ".svg" }) },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const r = await call(h.app, "/attach/upload", { body: c.body, token });
      strictEqual(r.status, 415);
      strictEqual(r.body.code, -1);
      match(r.body.msg, /^File type not allowed/);
    });
  }
  deepStrictEqual(await listDir(h.uploadsDir), []);
});

Deno.test('S9: an empty upload is answered "File is empty"', async () => {
  await using t = await makeTestApp();
  const { token } = await register(t.app, "13800000001");
  const r = await call(t.app, "/attach/upload", { body: form(new Uint8Array(0)), token });
  strictEqual(r.status, 400);
  deepStrictEqual(r.body, { code: -1, msg: "File is empty" });
});

Deno.test("S9: uploads over the limit are refused with 413 while reading", async () => {
  await using t = await makeTestApp({ config: { uploadMaxBytes: 1024 } });
  const { token } = await register(t.app, "13800000001");
  const big = pngOf(1025);
  const r = await call(t.app, "/attach/upload", { body: form(big), token });
  strictEqual(r.status, 413);
  deepStrictEqual(r.body, { code: -1, msg: "File exceeds 1024 bytes" });
  const huge = await call(t.app, "/attach/upload", { body: form(new Uint8Array(200_000)), token });
  strictEqual(huge.status, 413);
  const exact = pngOf(1024);
  strictEqual((await call(t.app, "/attach/upload", { body: form(exact), token })).body.code, 0);
});

Deno.test("/attach/upload refuses bad requests with a clear message", async (t) => {
  await using h = await makeTestApp();
  const { id, token } = await register(h.app, "13800000001");
  const cases = [
    { name: "no login", opts: { body: form(PNG) }, status: 401, msg: "Please log in first" },
    {
      name: "missing file field",
      opts: { body: form(undefined, "", { x: "1" }), token },
      status: 400,
      msg: 'Missing file field "file"',
    },
    {
      name: "file as text",
      opts: { body: form("hello"), token },
      status: 400,
      msg: 'Field "file" must be a file',
    },
    {
      name: "json body",
      opts: { fields: { file: "x" }, token },
      status: 415,
      msg: "Upload must be multipart/form-data",
    },
    {
      name: "multipart without a boundary",
      opts: {
        body: "--x\r\nnope",
        headers: { "content-type": "multipart/form-data" },
        token,
      },
      status: 400,
      msg: "Malformed multipart body",
    },
    {
      name: "someone else's userid",
      opts: { body: form(PNG, "a.png", { userid: String(id + 1) }), token },
      status: 403,
      msg: "userid",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const r = await call(h.app, "/attach/upload", c.opts);
      strictEqual(r.status, c.status);
      strictEqual(r.body.code, -1);
      ok(r.body.msg.includes(c.msg), r.body.msg);
    });
  }
  deepStrictEqual(await listDir(h.uploadsDir), []);
});

Deno.test("S9: /mnt has no listing, no traversal and serves only recorded uploads", async (t) => {
  await using h = await makeTestApp();
  const { token } = await register(h.app, "13800000001");
  await call(h.app, "/attach/upload", { body: form(PNG), token });
  await Deno.writeTextFile(
    join(h.uploadsDir, "0123456789abcdef0123456789abcdef.png"),
    "not recorded",
  );
  await Deno.writeTextFile(join(h.dir, "secret.txt"), "secret");
  for (
    const path of [
      "/mnt/",
      "/mnt",
      "/mnt/0123456789abcdef0123456789abcdef.png",
      "/mnt/..%2fsecret.txt",
      "/mnt/../secret.txt",
      "/mnt/%2e%2e/secret.txt",
    ]
  ) {
    await t.step(path, async () => {
      const r = await call(h.app, path, { method: "GET" });
      strictEqual(r.status, 404);
      strictEqual(r.body.code, -1);
    });
  }
});

/**
 * A multipart upload of `file` whose body the test releases: `send(n)` lets
 * n more bytes through, `end()` the rest. `pulled` counts what the server read.
 */
async function heldUpload(
  app: { fetch: (req: Request) => Response | Promise<Response> },
  token: string,
  file: Uint8Array<ArrayBuffer>,
) {
  const encoded = new Response(form(file));
  const type = encoded.headers.get("content-type") ?? "";
  const bytes = new Uint8Array(await encoded.arrayBuffer());
  let allowed = 0;
  let sent = 0;
  let wake = () => {};
  const state = { pulled: 0 };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (sent >= allowed) await new Promise<void>((r) => wake = r);
      // 1 KiB a pull, so what the server read shows in `pulled`.
      const chunk = bytes.slice(sent, Math.min(allowed, sent + 1024));
      sent += chunk.length;
      state.pulled = sent;
      controller.enqueue(chunk);
      if (sent >= bytes.length) controller.close();
    },
  });
  const response = Promise.resolve(app.fetch(
    new Request("http://127.0.0.1/attach/upload", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": type },
      body,
      duplex: "half",
    } as RequestInit),
  )).then(async (res) => ({ status: res.status, headers: res.headers, body: await res.json() }));
  return {
    response,
    state,
    send(n: number) {
      allowed = Math.min(bytes.length, allowed + n);
      wake();
    },
    end() {
      allowed = bytes.length;
      wake();
    },
  };
}

Deno.test("/attach/upload reads CHAT_UPLOAD_CONCURRENCY uploads at once; the next waits unread, a trickled one gets 408", async () => {
  const limited: string[] = [];
  await using t = await makeTestApp({
    extra: {
      uploads: new UploadGate({ concurrent: 1, readMs: 300, onLimited: (l) => limited.push(l) }),
    },
  });
  const a = await register(t.app, "13800000021");
  const b = await register(t.app, "13800000022");
  const file = pngOf(64 * 1024);
  // A sends a little and then nothing more: it holds the node's one turn.
  const slow = await heldUpload(t.app, a.token, file);
  slow.send(100);
  await new Promise((r) => setTimeout(r, 50));
  const next = await heldUpload(t.app, b.token, file);
  next.end();
  await new Promise((r) => setTimeout(r, 100));
  // Unread while it waits: the stream's own read-ahead is one chunk.
  ok(next.state.pulled <= 2 * 1024, `${next.state.pulled} bytes read`);
  let nextDone = false;
  void next.response.then(() => nextDone = true);
  const slowReply = await slow.response;
  strictEqual(slowReply.status, 408);
  deepStrictEqual(slowReply.body, { code: -1, msg: "Body not received within 1 s" });
  strictEqual(nextDone, false, "the second upload waited for the first's turn");
  const nextReply = await next.response;
  strictEqual(nextReply.status, 200);
  match(nextReply.body.data, /^\/mnt\/[0-9a-f]{32}\.png$/);
  deepStrictEqual(await listDir(t.uploadsDir), [nextReply.body.data.slice(5)]);
  deepStrictEqual(limited, []);
});

Deno.test("/attach/upload answers a user's third upload at once with 429, and a full node with 503 + Retry-After", async () => {
  await using t = await makeTestApp({
    extra: { uploads: new UploadGate({ concurrent: 2, queue: 0 }) },
  });
  const a = await register(t.app, "13800000023");
  const b = await register(t.app, "13800000024");
  const file = pngOf(1024);
  const first = await heldUpload(t.app, a.token, file);
  const second = await heldUpload(t.app, a.token, file);
  await new Promise((r) => setTimeout(r, 20));
  const third = await call(t.app, "/attach/upload", { body: form(file), token: a.token });
  strictEqual(third.status, 429);
  strictEqual(third.headers.get("retry-after"), "1");
  match(third.body.msg, /2 uploads in progress/);
  const busy = await call(t.app, "/attach/upload", { body: form(file), token: b.token });
  strictEqual(busy.status, 503);
  strictEqual(busy.headers.get("retry-after"), "5");
  match(busy.body.msg, /busy with other uploads/);
  first.end();
  second.end();
  strictEqual((await first.response).status, 200);
  strictEqual((await second.response).status, 200);
  strictEqual(
    (await call(t.app, "/attach/upload", { body: form(file), token: b.token })).status,
    200,
  );
});

Deno.test("/attach/upload answers a declared length past the limit with 413 without waiting for a turn", async () => {
  await using t = await makeTestApp({
    config: { uploadMaxBytes: 1024 },
    extra: { uploads: new UploadGate({ concurrent: 1, waitMs: 60_000 }) },
  });
  const a = await register(t.app, "13800000026");
  const b = await register(t.app, "13800000027");
  const file = pngOf(512);
  const held = await heldUpload(t.app, a.token, file);
  const started = performance.now();
  const res = await t.app.fetch(
    new Request("http://127.0.0.1/attach/upload", {
      method: "POST",
      headers: {
        authorization: `Bearer ${b.token}`,
        "content-type": "multipart/form-data; boundary=x",
        "content-length": String(10 * 1024 * 1024),
      },
      body: new Uint8Array(10),
    }),
  );
  strictEqual(res.status, 413);
  deepStrictEqual(await res.json(), { code: -1, msg: "File exceeds 1024 bytes" });
  ok(performance.now() - started < 5_000, "answered without waiting");
  held.end();
  strictEqual((await held.response).status, 200);
});

Deno.test("/attach/upload: two uploads of one user at once cannot both pass a quota only one fits", async () => {
  const file = pngOf(600);
  await using t = await makeTestApp({
    extra: {
      limits: new AbuseLimits({ ...parseConfig({}), uploadQuotaBytes: 1000 }),
    },
  });
  const { id, token } = await register(t.app, "13800000025");
  const one = await heldUpload(t.app, token, file);
  const two = await heldUpload(t.app, token, file);
  one.end();
  two.end();
  const statuses = [(await one.response).status, (await two.response).status].sort();
  deepStrictEqual(statuses, [200, 422]);
  strictEqual(await t.store.attachmentBytes(id), 600);
  strictEqual((await listDir(t.uploadsDir)).length, 1);
});

/** A multipart body with one "file" part, delimited by `boundary`. */
function multipartOf(file: Uint8Array, boundary: string): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder();
  const head = enc.encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n` +
      "Content-Type: image/png\r\n\r\n",
  );
  const tail = enc.encode(`\r\n--${boundary}--\r\n`);
  const out = new Uint8Array(head.length + file.length + tail.length);
  out.set(head);
  out.set(file, head.length);
  out.set(tail, head.length + file.length);
  return out;
}

/** `bytes` as a stream of small chunks of varied sizes, yielding to the event loop now and then. */
function trickle(bytes: Uint8Array, state = { pulled: 0 }): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (state.pulled >= bytes.length) return controller.close();
      const n = 1 + (i++ * 389) % 1500;
      controller.enqueue(bytes.slice(state.pulled, state.pulled + n));
      state.pulled += n;
      if (i % 16 === 0) await new Promise((r) => setTimeout(r, 0));
    },
  });
}

/** POST `body` to /attach/upload on a real server at `base`; the status and JSON reply. */
async function postUpload(
  base: string,
  token: string,
  body: BodyInit,
  type: string,
): Promise<{ status: number; body: { code: number; msg: string; data?: string } }> {
  const res = await fetch(`${base}/attach/upload`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": type },
    body,
    duplex: "half",
  } as RequestInit);
  return { status: res.status, body: await res.json() };
}

function serve(app: { fetch: (req: Request) => Response | Promise<Response> }) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
}

Deno.test("/attach/upload stores a file streamed in many small chunks byte for byte", async () => {
  await using t = await makeTestApp({ config: { uploadMaxBytes: 1024 * 1024 } });
  await using server = serve(t.app);
  const base = `http://127.0.0.1:${server.addr.port}`;
  const { token } = await register(t.app, "13800000031");
  const boundary = "----lanchat-test-boundary";
  // Random bytes, with lines that look like the boundary but are not one.
  const file = pngOf(300 * 1024);
  for (let at = PNG.length; at < file.length; at += 65536) {
    crypto.getRandomValues(file.subarray(at, Math.min(file.length, at + 65536)));
  }
  const traps = new TextEncoder().encode(`\r\n--${boundary}x\r\n--${boundary.slice(0, -3)}\r\n`);
  for (const at of [1000, 70_000, 200_000]) file.set(traps, at);
  const r = await postUpload(
    base,
    token,
    trickle(multipartOf(file, boundary)),
    `multipart/form-data; boundary=${boundary}`,
  );
  strictEqual(r.status, 200, r.body.msg);
  const name = r.body.data!.slice("/mnt/".length);
  match(name, /^[0-9a-f]{32}\.png$/);
  deepStrictEqual(await Deno.readFile(join(t.uploadsDir, name)), file);
  const served = await fetch(`${base}/mnt/${name}`);
  deepStrictEqual(new Uint8Array(await served.arrayBuffer()), file);
  strictEqual((await t.store.findAttachment(name))?.size, file.length);
  deepStrictEqual(await listDir(t.uploadsDir), [name]);
});

Deno.test("/attach/upload refuses a body past the limit without a Content-Length with 413 as soon as it is passed, leaving no file", async () => {
  const max = 256 * 1024;
  await using t = await makeTestApp({ config: { uploadMaxBytes: max } });
  await using server = serve(t.app);
  const base = `http://127.0.0.1:${server.addr.port}`;
  const { id, token } = await register(t.app, "13800000032");
  const boundary = "b0undary";
  // 64 MiB that the server must not read to its end: it answers once the file passes the limit.
  const head = multipartOf(pngOf(128), boundary).subarray(
    0,
    -`\r\n--${boundary}--\r\n`.length - 128,
  );
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= 64 * 1024 * 1024) return controller.close();
      const chunk = pulled === 0 ? pngOf(16 * 1024) : new Uint8Array(16 * 1024);
      controller.enqueue(pulled === 0 ? new Uint8Array([...head, ...chunk]) : chunk);
      pulled += 16 * 1024;
    },
  });
  let r;
  try {
    r = await postUpload(base, token, body, `multipart/form-data; boundary=${boundary}`);
  } catch (e) {
    throw new Error(`No answer after ${pulled} bytes sent`, { cause: e });
  }
  strictEqual(r.status, 413);
  deepStrictEqual(r.body, { code: -1, msg: `File exceeds ${max} bytes` });
  // What the sockets' buffers hold besides; not the 64 MiB.
  ok(pulled < 32 * 1024 * 1024, `${pulled} bytes sent`);
  deepStrictEqual(await listDir(t.uploadsDir), []);
  strictEqual(await t.store.attachmentBytes(id), 0);
});

Deno.test("/attach/upload answers a malformed multipart body 400 with a clear message, and stores nothing", async (t) => {
  await using h = await makeTestApp({ config: { uploadMaxBytes: 1024 * 1024 } });
  await using server = serve(h.app);
  const base = `http://127.0.0.1:${server.addr.port}`;
  const { id, token } = await register(h.app, "13800000033");
  const boundary = "b0undary";
  const whole = multipartOf(pngOf(200 * 1024), boundary);
  const enc = new TextEncoder();
  const cases = [
    {
      // Past the bytes held in memory: the file was on disk when the body ended.
      name: "no closing boundary after 200 KiB",
      body: whole.slice(0, whole.length - 20),
      msg: "Malformed multipart body: it ends before its closing boundary",
    },
    {
      name: "the closing boundary run on with other text",
      body: new Uint8Array([...whole.subarray(0, whole.length - 4), ...enc.encode("xx\r\n")]),
      msg: "Malformed multipart body: it ends before its closing boundary",
    },
    {
      name: "a part header line without a colon",
      body: enc.encode(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\noops\r\n\r\nx\r\n--${boundary}--`,
      ),
      msg: 'Malformed multipart body: part header line "oops" has no colon',
    },
    {
      name: "a part without a name",
      body: enc.encode(
        `--${boundary}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--${boundary}--`,
      ),
      msg: "Malformed multipart body: a part has no name",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const r = await postUpload(
        base,
        token,
        trickle(c.body),
        `multipart/form-data; boundary=${boundary}`,
      );
      strictEqual(r.status, 400);
      deepStrictEqual(r.body, { code: -1, msg: c.msg });
    });
  }
  deepStrictEqual(await listDir(h.uploadsDir), []);
  strictEqual(await h.store.attachmentBytes(id), 0);
});

Deno.test("/attach/upload removes the partial file of a client that goes away mid-upload", async () => {
  await using t = await makeTestApp({ config: { uploadMaxBytes: 4 * 1024 * 1024 } });
  await using server = serve(t.app);
  const { id, token } = await register(t.app, "13800000034");
  const boundary = "b0undary";
  const bytes = multipartOf(pngOf(1024 * 1024), boundary);
  const gone = new AbortController();
  const state = { pulled: 0 };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      // Half the file, then the client gives up once the server has written some of it.
      if (state.pulled >= bytes.length / 2) {
        while ((await listDir(t.uploadsDir)).length === 0) {
          await new Promise((r) => setTimeout(r, 10));
        }
        gone.abort();
        return;
      }
      controller.enqueue(bytes.slice(state.pulled, state.pulled + 16 * 1024));
      state.pulled += 16 * 1024;
    },
  });
  await rejects(
    fetch(`http://127.0.0.1:${server.addr.port}/attach/upload`, {
      method: "POST",
      signal: gone.signal,
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": `multipart/form-data; boundary=${boundary}`,
      },
      body,
      duplex: "half",
    } as RequestInit),
  );
  const deadline = Date.now() + 5_000;
  while ((await listDir(t.uploadsDir)).length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  deepStrictEqual(await listDir(t.uploadsDir), []);
  strictEqual(await t.store.attachmentBytes(id), 0);
});
