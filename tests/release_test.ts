/**
 * The release fallback: `deploy/release.ts --fallback` bundles the server
 * into a temporary folder outside the checkout with static/, templates/ and
 * the start scripts; `start.sh` runs it there with the scoped permissions
 * and it answers a chat. Also checks that every shipped start script and
 * the systemd unit grant exactly the settings the server reads.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { join, relative } from "node:path";
import {
  buildRelease,
  releaseEnv,
  runtimeFlags,
  startTaskV8Flags,
  v8FlagsOf,
} from "../deploy/release.ts";
import { befriend, connectUser, getText, register, ROOT, startNode } from "./_node_helpers.ts";

Deno.test("the shipped start scripts and systemd unit grant exactly the start task's settings", async () => {
  const env = await releaseEnv();
  const files = ["deploy/start.sh", "deploy/windows/start.cmd", "deploy/systemd/lanchat.service"];
  for (const file of files) {
    const text = await Deno.readTextFile(join(ROOT, file));
    const lists = [...text.matchAll(/(?:ENVS=|--allow-env=)"?([A-Z_,]+)/g)].map((m) => m[1]);
    ok(lists.length > 0, file);
    for (const list of lists) deepStrictEqual(list!.split(","), env, file);
    ok(!/(^|\s)-A(\s|$)|--allow-all/.test(text), `${file} must not grant everything`);
  }
});

Deno.test("start.cmd keeps CRLF line endings: cmd.exe misreads ( ) blocks in an LF-only batch file", async () => {
  const text = await Deno.readTextFile(join(ROOT, "deploy", "windows", "start.cmd"));
  ok(text.endsWith("\r\n"), "ends with CRLF");
  strictEqual(text.split("\n").length - 1, text.split("\r\n").length - 1, "every LF has its CR");
});

Deno.test("the shipped start scripts, systemd unit and compiled release run with the start task's V8 flags", async () => {
  const v8 = startTaskV8Flags();
  // docs/config.md: the young generation's cap is what keeps a connect burst's memory down.
  ok(v8.some((f) => /--max-semi-space-size=\d+/.test(f)), `start task: ${v8.join(" ")}`);
  const files = ["deploy/start.sh", "deploy/windows/start.cmd", "deploy/systemd/lanchat.service"];
  for (const file of files) {
    const text = await Deno.readTextFile(join(ROOT, file));
    deepStrictEqual(v8FlagsOf(text), v8, file);
  }
  deepStrictEqual(runtimeFlags(await releaseEnv(), [], v8).slice(0, v8.length), v8);
});

Deno.test("the bundled release started from a folder outside the checkout answers a chat", async () => {
  const out = await Deno.makeTempDir({ prefix: "lanchat_release_" });
  ok(relative(ROOT, out).startsWith(".."), "the release folder is outside the checkout");
  try {
    strictEqual(await buildRelease(out, { fallback: true }), "bundle");
    const files = ["server.js", "lib/_sqlite_append_worker.ts", "start.sh", "start.cmd", "static"];
    for (const f of [...files, "templates", "DEPLOY.md"]) {
      await Deno.stat(join(out, f));
    }
    await using node = await startNode({
      command: "sh",
      args: [join(out, "start.sh")],
      cwd: "/",
      env: { CHAT_BUS: "local" },
    });
    const base = `http://127.0.0.1:${node.port}`;
    strictEqual((await getText(`${base}/healthz`)).status, 200);
    // The bundled append worker loads under the release's permissions.
    ok(node.log().includes("Message appends run on a worker thread"), node.log());
    const login = await getText(`${base}/user/login.shtml`);
    strictEqual(login.status, 200);

    const ann = await register(base, "13700000001", "Ann");
    const bob = await register(base, "13700000002", "Bob");
    await befriend(base, ann, bob);
    const annSocket = await connectUser(`ws://127.0.0.1:${node.port}`, ann);
    const bobSocket = await connectUser(`ws://127.0.0.1:${node.port}`, bob);
    annSocket.send({ cmd: 10, dstid: bob.id, media: 1, content: "From the release", cid: "r1" });
    const [got] = await bobSocket.waitFor((f) => f["cmd"] === 10 && f["cid"] === "r1");
    strictEqual(got!["content"], "From the release");
    await annSocket.close();
    await bobSocket.close();
    strictEqual(await node.stop(), 0);
    // The data went to the release folder's ./data, as the start script says.
    await Deno.stat(join(out, "data", "chat.db"));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
