/**
 * The shipped nginx config (deploy/nginx/lanchat.conf), run by Debian's nginx
 * on 127.0.0.1 from a temporary prefix (its own pid, logs and temp paths; not
 * the system nginx) in front of two lanchat processes that share one data
 * folder and a UDP bus on loopback. Two users attached through nginx land on
 * different nodes and chat.
 */

import { ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { CLOSE } from "../lib/close_codes.ts";
import {
  befriend,
  connectUser,
  freePort,
  getText,
  loopbackUdpBus,
  metricValue,
  register,
  ROOT,
  startNode,
} from "./_node_helpers.ts";

const SHIPPED = join(ROOT, "deploy", "nginx", "lanchat.conf");

/** The nginx binary, or undefined when it is not installed (.ci/run installs it). */
function findNginx(): string | undefined {
  for (const cmd of ["nginx", "/usr/sbin/nginx"]) {
    try {
      new Deno.Command(cmd, { args: ["-v"], stdout: "null", stderr: "null" }).outputSync();
      return cmd;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable)) {
        throw error;
      }
    }
  }
  return undefined;
}

const NGINX = findNginx();

/** The shipped site config with each upstream's servers and the listen address replaced. */
export function siteConfig(shipped: string, listen: number, nodes: readonly number[]): string {
  const servers = nodes.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=5s;`);
  let replaced = 0;
  const out = shipped
    .replace(/^(?:\s*server\s+[0-9.]+:[0-9]+[^;]*;\n)+/gm, () => {
      replaced++;
      return servers.join("\n") + "\n";
    })
    .replace(/^(\s*)listen 80;/m, `$1listen 127.0.0.1:${listen};`);
  const upstreams = shipped.match(/^upstream /gm)?.length ?? 0;
  if (replaced === 0 || replaced !== upstreams || !out.includes(`listen 127.0.0.1:${listen};`)) {
    throw new Error("deploy/nginx/lanchat.conf no longer has the lines this test replaces");
  }
  return out;
}

/** The main nginx.conf for a prefix `dir`: everything nginx writes stays there. */
function mainConfig(dir: string): string {
  return [
    "daemon off;",
    "worker_processes 1;",
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log info;`,
    "events { worker_connections 256; }",
    "http {",
    `  access_log ${dir}/access.log;`,
    `  client_body_temp_path ${dir}/tmp/client_body;`,
    `  proxy_temp_path ${dir}/tmp/proxy;`,
    `  fastcgi_temp_path ${dir}/tmp/fastcgi;`,
    `  uwsgi_temp_path ${dir}/tmp/uwsgi;`,
    `  scgi_temp_path ${dir}/tmp/scgi;`,
    `  include ${dir}/lanchat.conf;`,
    "}",
    "",
  ].join("\n");
}

Deno.test("the shipped nginx config proxies websockets as documented", async () => {
  const text = await Deno.readTextFile(SHIPPED);
  for (
    const line of [
      "proxy_http_version 1.1;",
      "proxy_set_header Upgrade $http_upgrade;",
      "proxy_set_header Connection $connection_upgrade;",
      "least_conn;",
      "client_max_body_size 10m;",
      "proxy_read_timeout 75s;",
    ]
  ) ok(text.includes(line), line);
  // 10m is the default CHAT_UPLOAD_MAX_BYTES; 75 s is above the 60 s idle timeout.
  const { parseConfig } = await import("../lib/config.ts");
  strictEqual(parseConfig({}).uploadMaxBytes, 10 * 1024 * 1024);
  const { SESSION_DEFAULTS } = await import("../lib/session.ts");
  ok(75_000 > SESSION_DEFAULTS.idleTimeoutMs);
});

Deno.test({
  name: "two users attached through nginx to different nodes chat with each other",
  ignore: NGINX === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "lanchat_nginx_" });
    const dataDir = join(dir, "data");
    await Deno.mkdir(dataDir);
    // Workers may run as another user when the test runs as root.
    await Deno.chmod(dir, 0o755);
    for (const sub of ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]) {
      await Deno.mkdir(join(dir, "tmp", sub), { recursive: true });
      await Deno.chmod(join(dir, "tmp", sub), 0o777);
    }
    try {
      const udp = loopbackUdpBus();
      const env = { ...udp.env, CHAT_DATA: dataDir, CHAT_METRICS_ADDR: "127.0.0.1:0" };
      const extraNet = udp.extraNet;
      await using node1 = await startNode({ env: { ...env, CHAT_NODE_ID: "n1" }, extraNet });
      await using node2 = await startNode({ env: { ...env, CHAT_NODE_ID: "n2" }, extraNet });

      const listen = freePort();
      const shipped = await Deno.readTextFile(SHIPPED);
      await Deno.writeTextFile(
        join(dir, "lanchat.conf"),
        siteConfig(shipped, listen, [node1.port, node2.port]),
      );
      await Deno.writeTextFile(join(dir, "nginx.conf"), mainConfig(dir));
      const nginxArgs = ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")];
      const check = await new Deno.Command(NGINX!, { args: ["-t", ...nginxArgs] }).output();
      strictEqual(check.code, 0, new TextDecoder().decode(check.stderr));
      const nginx = new Deno.Command(NGINX!, {
        args: nginxArgs,
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        const base = `http://127.0.0.1:${listen}`;
        await waitForHttp(`${base}/healthz`);
        const ann = await register(base, "13900000001", "Ann");
        const bob = await register(base, "13900000002", "Bob");
        await befriend(base, ann, bob);

        const annSocket = await connectUser(`ws://127.0.0.1:${listen}`, ann);
        const bobSocket = await connectUser(`ws://127.0.0.1:${listen}`, bob);
        // least_conn put the second socket on the other node.
        const counts = await Promise.all([node1, node2].map(async (n) => {
          const page = await getText(`http://127.0.0.1:${n.metricsPort}/metrics`);
          return metricValue(page.text, "lanchat_connections");
        }));
        strictEqual(counts[0], 1, `node connections: ${counts}`);
        strictEqual(counts[1], 1, `node connections: ${counts}`);

        annSocket.send({ cmd: 10, dstid: bob.id, media: 1, content: "Hi Bob", cid: "a1" });
        const [ack] = await annSocket.waitFor((f) => f["cmd"] === 20 && f["cid"] === "a1");
        const [got] = await bobSocket.waitFor((f) => f["cmd"] === 10 && f["cid"] === "a1");
        strictEqual(got!["content"], "Hi Bob");
        strictEqual(got!["userid"], ann.id);
        strictEqual(got!["seq"], ack!["seq"]);

        bobSocket.send({ cmd: 10, dstid: ann.id, media: 1, content: "Hi Ann", cid: "b1" });
        const [back] = await annSocket.waitFor((f) => f["cmd"] === 10 && f["cid"] === "b1");
        strictEqual(back!["content"], "Hi Ann");

        // /metrics stays off the public address.
        strictEqual((await getText(`${base}/metrics`)).status, 404);

        // A websocket opened after REST traffic (which fills nginx's upstream
        // keep-alive cache) still gets the node's front-door socket: it closes a
        // message over 1 MiB with 1009, where Deno's websocket would take it.
        const late = await connectUser(`ws://127.0.0.1:${listen}`, ann);
        late.ws.send("x".repeat(1024 * 1024 + 1));
        const timeout = new Promise((r) => setTimeout(() => r("still open after 5 s"), 5000));
        strictEqual(await Promise.race([late.closed, timeout]), CLOSE.tooBig.code);
        await late.close();
        await annSocket.close();
        await bobSocket.close();
      } finally {
        nginx.kill("SIGTERM");
        await nginx.status;
      }
      strictEqual(await node1.stop(), 0);
      strictEqual(await node2.stop(), 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function waitForHttp(url: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.body?.cancel();
      if (res.ok) return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
