/**
 * Least privilege, proven: the server runs as a real `deno run main.ts`
 * child under exactly the `start` task's permissions (read from deno.json;
 * only HOST, PORT and CHAT_DATA set, CHAT_DATA inside ./data because the
 * task grants --allow-write=./data). Path traversal in an upload name, a
 * file name under /mnt/, a page name or a static asset path is refused by
 * our own checks with a clear error; and a probe run under the identical
 * flags shows that opening such a path anyway hits Deno's permission wall
 * (NotCapable). See docs/security.md.
 */

import { PNG } from "../_http_helpers.ts";
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { ROOT, startNode } from "../_node_helpers.ts";

/** The permission flags of the `start` task, in order. */
async function startTaskFlags(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const words = String(config.tasks.start).split(/\s+/);
  strictEqual(words[0], "deno");
  strictEqual(words[1], "run");
  strictEqual(words.at(-1), "main.ts");
  const flags = words.slice(2, -1);
  ok(flags.every((f) => f.startsWith("--")), `only flags before main.ts: ${flags.join(" ")}`);
  ok(
    !flags.some((f) => f === "-A" || f === "--allow-all" || /^--allow-[a-z-]+$/.test(f)),
    "never -A or an unscoped --allow-*",
  );
  return flags;
}

Deno.test("under the start task's permissions, path traversal hits our check and Deno's permission wall", async () => {
  const flags = await startTaskFlags();
  ok(flags.includes("--allow-write=./data"), "the start task may write only ./data");
  const name = `reliability_${crypto.randomUUID().slice(0, 8)}`;
  const dataDir = `./data/${name}`;
  const env = { HOST: "127.0.0.1", PORT: "0", CHAT_DATA: dataDir };
  try {
    await using server = await startNode({
      env,
      cwd: ROOT,
      args: ["run", "--quiet", "--no-prompt", ...flags, "main.ts"],
    });
    // The flags let the SQLite append worker load its modules (lib/), nothing else.
    ok(server.log().includes("Message appends run on a worker thread"), server.log());
    const base = `http://127.0.0.1:${server.port}`;
    const reg = await fetch(`${base}/user/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ mobile: "13900000001", passwd: "secret-pass" }),
    }).then((r) => r.json());
    strictEqual(reg.code, 0, JSON.stringify(reg));
    const token = String(reg.data.token);

    // 1. Our checks. An upload's name is never used: a traversal name is stored under a
    // server-chosen name inside <data>/mnt.
    for (const fileName of ["../../../../etc/passwd", "../../main.ts", "..\\..\\deno.json"]) {
      const form = new FormData();
      form.append("file", new File([PNG], fileName, { type: "image/png" }));
      const res = await fetch(`${base}/attach/upload`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: form,
      });
      const reply = await res.json();
      strictEqual(res.status, 200, JSON.stringify(reply));
      ok(/^\/mnt\/[0-9a-f]{32}\.png$/.test(reply.data), reply.data);
    }
    const stored = [];
    for await (const e of Deno.readDir(join(ROOT, dataDir, "mnt"))) stored.push(e.name);
    strictEqual(stored.length, 3);
    ok(stored.every((n) => /^[0-9a-f]{32}\.png$/.test(n)), stored.join(","));

    // Names under /mnt/, pages and static assets with ../ are refused before any file is opened.
    const refused: [string, number, string][] = [
      ["/mnt/..%2F..%2Fdeno.json", 404, "File not found"],
      ["/mnt/..%2F..%2F..%2F..%2Fetc%2Fpasswd", 404, "File not found"],
      ["/mnt/%2e%2e%2fchat.db", 404, "File not found"],
      ["/user/..%2F..%2Fdeno.json.shtml", 404, "Not found"],
      ["/chat/..%2F..%2Ftemplates%2Fuser%2Flogin.html", 404, "Not found"],
      ["/asset/..%2F..%2Fdeno.json", 404, "Not found"],
      ["/asset/%2e%2e/%2e%2e/etc/passwd", 404, "Not found"],
    ];
    for (const [path, status, msg] of refused) {
      const res = await fetch(base + path);
      const text = await res.text();
      strictEqual(res.status, status, `${path}: ${text.slice(0, 80)}`);
      deepStrictEqual(JSON.parse(text), { code: -1, msg }, path);
    }

    // 2. Deno's wall: the same flags, the same folders, the check bypassed on purpose.
    const probe = await new Deno.Command("deno", {
      args: ["run", "--quiet", "--no-prompt", ...flags, "tests/reliability/_escape_probe.ts"],
      cwd: ROOT,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(probe.stdout);
    strictEqual(probe.code, 0, new TextDecoder().decode(probe.stderr));
    deepStrictEqual(JSON.parse(out), {
      readUploadTraversal: "NotCapable",
      readTemplateTraversal: "NotCapable",
      readAbsolute: "NotCapable",
      readTmp: "NotCapable",
      writeUploadTraversal: "NotCapable",
      writeTemplate: "NotCapable",
      writeTmp: "NotCapable",
      readInsideCheckout: "NotCapable",
      readTemplate: "ok",
      readStatic: "ok",
      writeInsideData: "ok",
      runProcess: "NotCapable",
      envOther: "NotCapable",
    });
    // The server still serves after all of it.
    const health = await fetch(`${base}/healthz`);
    strictEqual(health.status, 200);
    await health.body?.cancel();
  } finally {
    await Deno.remove(join(ROOT, dataDir), { recursive: true }).catch(() => {});
  }
});
