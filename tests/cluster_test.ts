/**
 * Two `deno run main.ts` processes on one host form a cluster: the same
 * data folder and UDP port, different HTTP ports (or Redis + Postgres).
 * A user on node 1 reaches a user on node 2, 1:1 and in a group, and a
 * join made through node 1 is seen at once by a session on node 2.
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import pg from "pg";
import { ENV_NAMES } from "../lib/config.ts";
import { REDIS_ENV } from "../lib/permissions.ts";
import { pgConnectionConfig } from "../lib/_pg_dialect.ts";
import { pgUrl } from "./_chat_helpers.ts";
import { befriend, connectUser, postOk, register, ROOT, startNode } from "./_node_helpers.ts";

const isMsg = (f: Record<string, unknown>) => f["cmd"] === 10 || f["cmd"] === 11;
const SECRET = "two-node-test-secret-0123456789";

function clusterFlags(dataDir: string): string[] {
  return [
    "run",
    "--quiet",
    "--no-prompt",
    "--allow-net=127.0.0.1,0.0.0.0,127.255.255.255",
    `--allow-read=${ROOT},${dataDir}`,
    `--allow-write=${dataDir}`,
    `--allow-env=${[...ENV_NAMES, "PGBINARY", "PGREPLICATION", ...REDIS_ENV].join(",")}`,
    join(ROOT, "main.ts"),
  ];
}

/** A UDP port nobody uses right now. */
function freeUdpPort(): number {
  const s = Deno.listenDatagram({ transport: "udp", hostname: "127.255.255.255", port: 0 });
  const port = (s.addr as Deno.NetAddr).port;
  s.close();
  return port;
}

async function scenario(env: Record<string, string>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lanchat-cluster-" });
  try {
    const all = { CHAT_DATA: dir, CHAT_SECRET: SECRET, ...env };
    await using n1 = await startNode({
      env: { ...all, CHAT_NODE_ID: "n1" },
      args: clusterFlags(dir),
    });
    await using n2 = await startNode({
      env: { ...all, CHAT_NODE_ID: "n2" },
      args: clusterFlags(dir),
    });
    const http1 = `http://127.0.0.1:${n1.port}`;
    const ws1 = `ws://127.0.0.1:${n1.port}`;
    const ws2 = `ws://127.0.0.1:${n2.port}`;
    const tag = String(Date.now() % 1e8).padStart(8, "0");
    const ann = await register(http1, `139${tag}`, "Ann");
    const bob = await register(http1, `138${tag}`, "Bob");
    const cat = await register(http1, `137${tag}`, "Cat");
    await befriend(http1, ann, bob);

    const a = await connectUser(ws1, ann);
    const b = await connectUser(ws2, bob);
    const c = await connectUser(ws2, cat);
    try {
      // 1:1 across nodes.
      a.send({ cmd: 10, dstid: bob.id, media: 1, content: "hi bob", cid: "x1" });
      const [got] = await b.waitFor(isMsg);
      strictEqual(got?.["content"], "hi bob");
      strictEqual(got?.["userid"], ann.id);

      // A long message does not fit one datagram: it travels by reference.
      const long = "长".repeat(3000);
      b.send({ cmd: 10, dstid: ann.id, media: 1, content: long, cid: "x2" });
      const [back] = await a.waitFor(isMsg);
      strictEqual(back?.["content"], long);

      // A group made on node 1; Cat (connected to node 2) joins through node 1.
      const created = await postOk(http1, "/contact/createcommunity", { name: "team" }, ann.token);
      const gid = (created["data"] as { id: number }).id;
      await postOk(http1, "/contact/joincommunity", { dstid: gid }, bob.token);
      await postOk(http1, "/contact/joincommunity", { dstid: gid }, cat.token);
      await new Promise((r) => setTimeout(r, 100));
      a.send({ cmd: 11, dstid: gid, media: 1, content: "hello team", cid: "g1" });
      const [onCat] = await c.waitFor(isMsg);
      const [onBob] = await b.waitFor((f) => f["cmd"] === 11);
      strictEqual(onCat?.["content"], "hello team");
      strictEqual(onBob?.["content"], "hello team");
      await new Promise((r) => setTimeout(r, 200));
      deepStrictEqual(c.frames.filter(isMsg).map((f) => f["seq"]), [1], "each message once");
    } finally {
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("two nodes on one host share CHAT_DATA and the UDP port: 1:1, group, join", async () => {
  await scenario({ CHAT_UDP_PORT: String(freeUdpPort()) });
});

const redis = Deno.env.get("CHAT_TEST_REDIS_URL");
Deno.test({
  name: "two nodes on Redis and Postgres: 1:1, group, join",
  ignore: redis === undefined || pgUrl() === undefined,
  async fn() {
    const admin = new pg.Client(pgConnectionConfig(pgUrl()!));
    await admin.connect();
    const db = `lanchat_cluster_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
    await admin.query(`create database ${db}`);
    try {
      const url = new URL(pgUrl()!);
      url.pathname = `/${db}`;
      await scenario({ CHAT_BUS: redis!, CHAT_DB: url.toString() });
    } finally {
      await admin.query(`drop database if exists ${db} with (force)`);
      await admin.end();
    }
  },
});
