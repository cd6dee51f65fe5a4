/**
 * main.ts as a user runs it: a real `deno run` child process with scoped
 * permissions, on 127.0.0.1 with a free port and a temporary data folder.
 */

import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { ENV_NAMES } from "../lib/config.ts";
import { loopbackUdpBus, register, startNode } from "./_node_helpers.ts";

const MAIN = join(import.meta.dirname!, "..", "main.ts");
const ROOT = join(import.meta.dirname!, "..");

function baseFlags(dataDir: string): string[] {
  return [
    "run",
    "--quiet",
    "--no-prompt",
    `--allow-read=${ROOT},${dataDir}`,
    `--allow-write=${dataDir}`,
    `--allow-env=${ENV_NAMES.join(",")}`,
  ];
}

function childEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NO_COLOR: "1",
    HOST: "127.0.0.1",
    PORT: "0",
    CHAT_DATA: dataDir,
    CHAT_BUS: "local",
    ...extra,
  };
}

async function runToEnd(args: string[], env: Record<string, string>) {
  const out = await new Deno.Command("deno", {
    args,
    env,
    stdout: "piped",
    stderr: "piped",
    clearEnv: false,
  })
    .output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
}

Deno.test("main.ts stops with one line and exit code 2 on a bad setting", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await runToEnd(
      [...baseFlags(dir), "--allow-net=127.0.0.1", MAIN],
      childEnv(dir, { CHAT_TOKEN_TTL: "soon" }),
    );
    strictEqual(r.code, 2);
    strictEqual(
      r.stderr,
      'Invalid CHAT_TOKEN_TTL: must be an integer from 60 to 31536000, got "soon"',
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts stops with one line naming the setting when its port, metrics port or data folder cannot be used", async (t) => {
  const dir = await Deno.makeTempDir();
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(held.addr.port);
  try {
    const cases = [
      {
        name: "PORT in use",
        env: { PORT: port },
        line: `Cannot listen on "127.0.0.1:${port}" (HOST, PORT): `,
      },
      {
        name: "CHAT_METRICS_ADDR in use",
        env: { CHAT_METRICS_ADDR: `127.0.0.1:${port}` },
        line: `Cannot listen on "127.0.0.1:${port}" (CHAT_METRICS_ADDR): `,
      },
      {
        name: "CHAT_DATA is a file",
        env: { CHAT_DATA: join(dir, "file") },
        line: `Cannot use the data folder "${join(dir, "file")}" (CHAT_DATA): `,
      },
    ];
    await Deno.writeTextFile(join(dir, "file"), "not a folder");
    for (const c of cases) {
      await t.step(c.name, async () => {
        const data = await Deno.makeTempDir({ dir });
        const r = await runToEnd(
          [...baseFlags(dir), "--allow-net=127.0.0.1", MAIN],
          childEnv(data, c.env),
        );
        strictEqual(r.code, 1, r.stderr);
        const fatal = r.stderr.split("\n").filter((l) => l.includes(" FTL "));
        strictEqual(fatal.length, 1, r.stderr);
        ok(fatal[0]!.includes(c.line), fatal[0]);
        ok(!/^\s+at /m.test(r.stderr), `no stack trace:\n${r.stderr}`);
      });
    }
  } finally {
    held.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts names the missing --allow-net flag in one line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await runToEnd([...baseFlags(dir), MAIN], childEnv(dir));
    strictEqual(r.code, 2);
    strictEqual(
      r.stderr,
      "Missing permission to listen on HOST:PORT: add --allow-net=127.0.0.1 to the deno run command",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts names the missing --allow-env flag in one line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const flags = baseFlags(dir).filter((f) => !f.startsWith("--allow-env"));
    const r = await runToEnd(
      [...flags, "--allow-env=HOST", "--allow-net=127.0.0.1", MAIN],
      childEnv(dir),
    );
    strictEqual(r.code, 2);
    match(r.stderr, /^Missing permission to read settings: add --allow-env=HOST,PORT,CHAT_DATA,/);
    strictEqual(r.stderr.includes("\n"), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts serves on SQLite in its data folder and stops cleanly on SIGTERM", async () => {
  const dir = await Deno.makeTempDir();
  const child = new Deno.Command("deno", {
    args: [...baseFlags(dir), "--allow-net=127.0.0.1", MAIN],
    env: childEnv(dir),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const port = await readListenPort(child.stdout);
    const base = `http://127.0.0.1:${port}`;
    const root = await fetch(base + "/", { redirect: "manual" });
    await root.body?.cancel();
    strictEqual(root.status, 302);
    strictEqual(root.headers.get("location"), "/user/login.shtml");

    const reg = await fetch(base + "/user/register", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ mobile: "13800000001", passwd: "secret-pass", nickname: "Ann" }),
    });
    const body = await reg.json();
    strictEqual(body.code, 0, JSON.stringify(body));

    const files = [];
    for await (const e of Deno.readDir(dir)) files.push(e.name);
    deepStrictEqual(
      files.includes("chat.db") && files.includes("secret") && files.includes("mnt"),
      true,
    );
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    await child.stderr.cancel();
    strictEqual(status.code, 0);
    await Deno.remove(dir, { recursive: true });
  }
});

/** Read the child's log until its "Listening on" line; leaves the rest unread but drained. */
async function readListenPort(stream: ReadableStream<Uint8Array>): Promise<number> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  // A server that never logs its port must fail the test, not hang it.
  const timer = setTimeout(() => reader.cancel(), 30_000);
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
    const m = seen.match(/Listening on "http:\/\/127\.0\.0\.1:(\d+)"/);
    if (m) {
      clearTimeout(timer);
      // Keep draining so the child never blocks on a full pipe.
      (async () => {
        try {
          while (!(await reader.read()).done) { /* drain */ }
        } catch { /* closed */ }
      })();
      return Number(m[1]);
    }
  }
  clearTimeout(timer);
  throw new Error(`Server did not report its port; output so far: ${seen}`);
}

Deno.test("CHAT_IDLE_TIMEOUT reaches the sessions: 1 s closes a silent socket with 4001, 0 keeps it", async () => {
  const udp = loopbackUdpBus();
  for (const [setting, expectClose] of [["1", true], ["0", false]] as const) {
    const dataDir = await Deno.makeTempDir({ prefix: "lanchat-idle-" });
    try {
      await using node = await startNode({
        env: { ...udp.env, CHAT_DATA: dataDir, CHAT_IDLE_TIMEOUT: setting },
        extraNet: udp.extraNet,
      });
      const user = await register(`http://127.0.0.1:${node.port}`, "13900000009", "idle");
      const ws = new WebSocket(
        `ws://127.0.0.1:${node.port}/chat?id=${user.id}&token=${encodeURIComponent(user.token)}`,
      );
      const closed = new Promise<number>((resolve) => ws.onclose = (e) => resolve(e.code));
      const waited = new Promise<"open">((resolve) => setTimeout(() => resolve("open"), 3_000));
      const outcome = await Promise.race([closed, waited]);
      strictEqual(outcome, expectClose ? 4001 : "open", `CHAT_IDLE_TIMEOUT=${setting}`);
      if (!expectClose) {
        ws.close();
        await closed;
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  }
});
