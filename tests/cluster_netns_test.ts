/**
 * Three nodes as three hosts: each in its own network namespace, on a
 * bridge, on a private subnet (10.200.0.0/24) that exists only while this
 * test runs, broadcasting to 10.200.0.255 only, with 10% packet loss on
 * every node's link (`tc netem`). They share one SQLite file (the
 * namespaces share the filesystem). Proves every message reaches every
 * session once, in seq order, though the bus loses datagrams.
 *
 * Needs root and iproute2 (`ip`, `tc`); skipped with a message otherwise.
 * Everything it creates is removed in `finally`, also when it fails.
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { ENV_NAMES } from "../lib/config.ts";
import type { TestSocket } from "./_chat_helpers.ts";
import {
  befriend,
  connectUser,
  type NodeProcess,
  postOk,
  register,
  ROOT,
  startNode,
  type TestUser,
} from "./_node_helpers.ts";

const SUBNET = "10.200.0";
const BROADCAST = `${SUBNET}.255`;
const NODES = [1, 2, 3] as const;
const PER_USER = 20;

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; err: string }> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
    return { ok: out.success, err: new TextDecoder().decode(out.stderr).trim() };
  } catch (error) {
    return { ok: false, err: String(error) };
  }
}

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (!r.ok) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.err}`);
}

/** Why the test cannot run here, or undefined when it can. */
async function unavailable(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not root";
  if (!(await run("ip", ["-V"])).ok) return "no `ip` (install iproute2)";
  if (!(await run("tc", ["-V"])).ok) return "no `tc` (install iproute2)";
  return undefined;
}

/** Whether the kernel has the netem qdisc (some VM kernels are built without it). */
async function hasNetem(): Promise<boolean> {
  const veth = `lcq${crypto.randomUUID().slice(0, 6)}`;
  if (!(await run("ip", ["link", "add", veth, "type", "veth", "peer", "name", `${veth}p`])).ok) {
    return false;
  }
  try {
    return (await run("tc", ["qdisc", "add", "dev", veth, "root", "netem", "loss", "10%"])).ok;
  } finally {
    await run("ip", ["link", "del", veth]);
  }
}

const reason = await unavailable();
const netem = reason === undefined && await hasNetem();

Deno.test({
  name: `three nodes in network namespaces${
    netem ? " with 10% loss" : " (this kernel has no sch_netem: no loss injected)"
  } deliver every message once, in order${reason === undefined ? "" : ` (skipped: ${reason})`}`,
  ignore: reason !== undefined,
  async fn() {
    const id = crypto.randomUUID().slice(0, 4);
    const bridge = `lcbr${id}`;
    const ns = (i: number) => `lcns${id}${i}`;
    const created: { bridge: boolean; ns: number[] } = { bridge: false, ns: [] };
    const nodes: NodeProcess[] = [];
    const sockets: TestSocket[] = [];
    const dir = await Deno.makeTempDir({ prefix: "lanchat-netns-" });
    try {
      await must("ip", ["link", "add", bridge, "type", "bridge"]);
      created.bridge = true;
      // The host side gets .1 so the test can open websockets to the nodes.
      await must("ip", ["addr", "add", `${SUBNET}.1/24`, "dev", bridge]);
      await must("ip", ["link", "set", bridge, "up"]);
      for (const i of NODES) {
        const host = `lcv${id}${i}`;
        const peer = `lcp${id}${i}`;
        await must("ip", ["netns", "add", ns(i)]);
        created.ns.push(i);
        await must("ip", ["link", "add", host, "type", "veth", "peer", "name", peer]);
        await must("ip", ["link", "set", peer, "netns", ns(i)]);
        await must("ip", ["link", "set", host, "master", bridge]);
        await must("ip", ["link", "set", host, "up"]);
        await must("ip", [
          "-n",
          ns(i),
          "addr",
          "add",
          `${SUBNET}.${10 + i}/24`,
          "broadcast",
          BROADCAST,
          "dev",
          peer,
        ]);
        await must("ip", ["-n", ns(i), "link", "set", peer, "up"]);
        await must("ip", ["-n", ns(i), "link", "set", "lo", "up"]);
        if (netem) {
          await must("tc", [
            "-n",
            ns(i),
            "qdisc",
            "add",
            "dev",
            peer,
            "root",
            "netem",
            "loss",
            "10%",
          ]);
        }
      }
      const flags = [
        "netns",
        "exec",
        "",
        "deno",
        "run",
        "--quiet",
        "--no-prompt",
        `--allow-net=0.0.0.0,${BROADCAST}`,
        `--allow-read=${ROOT},${dir}`,
        `--allow-write=${dir}`,
        `--allow-env=${ENV_NAMES.join(",")}`,
        join(ROOT, "main.ts"),
      ];
      for (const i of NODES) {
        const args = [...flags];
        args[2] = ns(i);
        nodes.push(
          await startNode({
            command: "ip",
            args,
            cwd: ROOT,
            env: {
              HOST: "0.0.0.0",
              PORT: "8080",
              CHAT_DATA: dir,
              CHAT_BROADCAST: BROADCAST,
              CHAT_UDP_PORT: "3000",
              CHAT_SECRET: "netns-test-secret-0123456789",
              CHAT_NODE_ID: `node${i}`,
            },
          }),
        );
      }
      const http = (i: number) => `http://${SUBNET}.${10 + i}:8080`;
      const ws = (i: number) => `ws://${SUBNET}.${10 + i}:8080`;
      const users: TestUser[] = [];
      for (const i of NODES) users.push(await register(http(1), `1360000000${i}`, `U${i}`));
      const [u1, u2, u3] = users as [TestUser, TestUser, TestUser];
      await befriend(http(1), u1, u2);
      await befriend(http(1), u2, u3);
      await befriend(http(1), u3, u1);
      const g = await postOk(http(1), "/contact/createcommunity", { name: "all" }, u1.token);
      const gid = (g["data"] as { id: number }).id;
      await postOk(http(2), "/contact/joincommunity", { dstid: gid }, u2.token);
      await postOk(http(3), "/contact/joincommunity", { dstid: gid }, u3.token);
      for (const i of NODES) sockets.push(await connectUser(ws(i), users[i - 1]!));

      // Each user sends PER_USER messages to the next user and to the group, interleaved.
      for (let n = 0; n < PER_USER; n++) {
        for (const i of NODES) {
          const next = users[i % 3]!;
          sockets[i - 1]!.send({
            cmd: 10,
            dstid: next.id,
            media: 1,
            content: `d${i}.${n}`,
            cid: `d${i}.${n}`,
          });
          sockets[i - 1]!.send({
            cmd: 11,
            dstid: gid,
            media: 1,
            content: `g${i}.${n}`,
            cid: `g${i}.${n}`,
          });
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      // Each user takes part in 2 direct conversations (PER_USER each) and the group (3 × PER_USER).
      const expected = 2 * PER_USER + 3 * PER_USER;
      for (const s of sockets) {
        await s.waitFor(
          (f) => f["cmd"] === 10 || f["cmd"] === 11 || f["cmd"] === 20,
          expected,
          30_000,
        );
      }
      await new Promise((r) => setTimeout(r, 1500));
      for (const [k, s] of sockets.entries()) {
        const byConv = new Map<string, number[]>();
        for (const f of s.frames) {
          if (f["cmd"] !== 10 && f["cmd"] !== 11 && f["cmd"] !== 20) continue;
          const conv = String(f["conv"]);
          byConv.set(conv, [...byConv.get(conv) ?? [], Number(f["seq"])]);
        }
        strictEqual(byConv.size, 3, `user ${k + 1} sees three conversations`);
        for (const [conv, seqs] of byConv) {
          const total = conv.startsWith("g:") ? 3 * PER_USER : PER_USER;
          deepStrictEqual(
            seqs,
            Array.from({ length: total }, (_, j) => j + 1),
            `user ${k + 1}, ${conv}: each seq once, in order`,
          );
        }
      }
    } finally {
      await Promise.all(sockets.map((s) => s.close()));
      await Promise.all(nodes.map((n) => n.stop()));
      for (const i of created.ns) await run("ip", ["netns", "del", ns(i)]);
      if (created.bridge) await run("ip", ["link", "del", bridge]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
