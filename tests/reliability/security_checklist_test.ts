/**
 * The weaknesses of the survey's section 6 that had no test elsewhere (see
 * docs/security.md): S10 secrets in source, S11 a hard-coded ws:// in the
 * client, R15 a page write error that stops the server, R17 a non-JSON
 * greeting frame.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { delay, startChatServer } from "../_chat_helpers.ts";
import { makeTestApp } from "../_http_helpers.ts";
import { ROOT } from "../_node_helpers.ts";

/** Shipped files: everything but tests, data, dependencies and build output. */
async function shippedFiles(dir = ROOT, rel = ""): Promise<string[]> {
  const skip = new Set([".git", "data", "node_modules", "release", "test-artifacts", "tests"]);
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (skip.has(e.name) && rel === "") continue;
    const path = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory) out.push(...await shippedFiles(join(dir, e.name), path));
    else if (/\.(ts|js|json|html|css|md|sh|cmd|conf|service|txt|svg)$/.test(e.name)) out.push(path);
  }
  return out;
}

const SECRET_PATTERNS: [string, RegExp][] = [
  ["a private key", /-----BEGIN [A-Z ]*PRIVATE KEY-----/],
  ["an AWS access key", /\bAKIA[0-9A-Z]{16}\b/],
  ["an Aliyun OSS access key (the seed's S10)", /\bLTAI[0-9A-Za-z]{12,}\b/],
  [
    "a hard-coded key or secret",
    /\b(?:access_?key(?:_?secret)?|secret_?key|api_?key|client_?secret)\b["']?\s*[:=]\s*["'][^"'\s]{8,}["']/i,
  ],
  ["a Go MySQL DSN with a password (the seed's S10)", /\b\w+:\w+@(?:tcp)?\([\w.-]+:\d+\)/],
  ["credentials in a URL", /\b[a-z][a-z0-9+.-]*:\/\/[^\s:@/"'`<>]+:([^\s@/"'`<>]+)@/i],
];
/** Placeholders that docs use in URLs; anything else after `user:` is taken for a real password. */
const PLACEHOLDERS = new Set(["password", "pass", "secret", "PASSWORD", "pw", "…", "..."]);

Deno.test("S10: no secret, key or credential is written in the shipped source", async () => {
  // The scan would have caught the seed's own leaks.
  for (
    const leak of [
      'const AccessKeySecret = "fSw0d1x9aB3cD4eF5gH6"',
      'endpoint: "oss", accessKeyId: "LTAI4FoLmvQ9urWXgSRgmtXX"',
      'xorm.NewEngine("mysql", "root:root@(127.0.0.1:3306)/chat")',
      "postgres://admin:hunter22@db.example.com/chat",
    ]
  ) ok(SECRET_PATTERNS.some(([, re]) => re.test(leak)), leak);
  const files = await shippedFiles();
  ok(
    files.includes("main.ts") && files.some((f) => f.startsWith("lib/")),
    "the scan sees the source",
  );
  const found: string[] = [];
  for (const file of files) {
    const text = await Deno.readTextFile(join(ROOT, file));
    for (const [what, re] of SECRET_PATTERNS) {
      const m = re.exec(text);
      if (m === null) continue;
      if (what === "credentials in a URL" && PLACEHOLDERS.has(m[1] ?? "")) continue;
      found.push(`${file}: ${what}: ${m[0].slice(0, 60)}`);
    }
  }
  deepStrictEqual(found, []);
});

Deno.test("S11: the web client derives ws: or wss: from the page, never a hard-coded ws://", async () => {
  const dir = join(ROOT, "static", "js");
  let sockets = 0;
  for await (const e of Deno.readDir(dir)) {
    const text = await Deno.readTextFile(join(dir, e.name));
    ok(!/["'`]wss?:\/\//.test(text), `${e.name} hard-codes a websocket URL`);
    if (/location\.protocol === "https:" \? "wss:" : "ws:"/.test(text)) sockets++;
  }
  strictEqual(sockets, 1, "one place picks the websocket scheme from location.protocol");
});

Deno.test("R17: the server sends no greeting; a fresh socket gets only JSON frames it asked for", async () => {
  await using server = await startChatServer();
  const user = await server.user("quiet");
  const socket = await server.connect(user, { catchUp: false });
  await delay(300);
  deepStrictEqual(socket.frames, [], "nothing before the client speaks");
  socket.send({ cmd: 0 });
  await socket.waitFor((f) => f["cmd"] === 0);
  // TestSocket JSON.parses every frame; a non-JSON frame would have failed the test.
  deepStrictEqual(socket.frames, [{ cmd: 0 }]);
});

Deno.test("R15: clients aborting page loads mid-response do not stop the server", async () => {
  await using t = await makeTestApp();
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    t.app.fetch,
  );
  try {
    const request = new TextEncoder().encode(
      "GET /user/login.shtml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    for (let i = 0; i < 50; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
      await conn.write(request);
      conn.close(); // gone before the page is written
    }
    const res = await fetch(`http://127.0.0.1:${server.addr.port}/user/login.shtml`);
    strictEqual(res.status, 200);
    ok((await res.text()).includes("<html"));
  } finally {
    ac.abort();
    await server.finished;
  }
});
