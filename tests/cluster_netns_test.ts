/**
 * Three nodes as three hosts: each in its own network namespace, on a
 * bridge, on a private subnet (10.200.0.0/24) that exists only while this
 * test runs, broadcasting to 10.200.0.255 only, with 10% loss of bus
 * datagrams in every node's namespace. They share one SQLite file (the
 * namespaces share the filesystem). Proves every message reaches every
 * session exactly once, in seq order, though the bus loses datagrams, and
 * that datagrams really were lost (the kernel's drop counters).
 *
 * The loss comes from `tc netem` on each node's link where the kernel has
 * `sch_netem`, else from an iptables `statistic` rule in each namespace's
 * INPUT chain (UDP to the bus port only). The loss is never skipped: with
 * neither, the test fails. Every rule lives in the test's own namespaces,
 * so deleting them is the whole cleanup; the host's tables are not touched.
 *
 * Needs root and iproute2 (`ip`; `tc` for netem, or `iptables`); skipped
 * when not root. Everything it creates is removed in `finally`, also when
 * it fails.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
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
import { must, run } from "./_command.ts";

const SUBNET = "10.200.0";
const BROADCAST = `${SUBNET}.255`;
const UDP_PORT = "3000";
const NODES = [1, 2, 3] as const;
const PER_USER = 20;
const LOSS = 0.1;

/** Packets a loss rule saw and dropped in one namespace. */
interface LossCount {
  readonly seen: number;
  readonly dropped: number;
}

/** A way to lose {@linkcode LOSS} of a namespace's packets. */
interface Loss {
  /** Shown in the test name. */
  readonly name: string;
  /** Add the loss to namespace `ns`, whose link to the bridge is `dev`. */
  install(ns: string, dev: string): Promise<void>;
  /** What the loss saw and dropped in `ns` so far. */
  count(ns: string, dev: string): Promise<LossCount>;
}

/** `tc netem` on the node's link: loses 10% of everything the node sends. */
const NETEM: Loss = {
  name: "tc netem",
  async install(ns, dev) {
    await must("tc", ["-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "loss", "10%"]);
  },
  async count(ns, dev) {
    // "Sent 1234 bytes 56 pkt (dropped 7, overlimits 0 requeues 0)"
    const out = await must("tc", ["-n", ns, "-s", "qdisc", "show", "dev", dev]);
    const m = out.match(/Sent \d+ bytes (\d+) pkt \(dropped (\d+)/);
    if (m === null) throw new Error(`Unexpected tc output: ${out}`);
    const dropped = Number(m[2]);
    return { seen: Number(m[1]) + dropped, dropped };
  },
};

/**
 * iptables in the namespace: a counting rule for UDP to the bus port, then
 * a rule dropping 10% of those at random (`-m statistic`). `bin` is
 * `iptables` or `iptables-legacy`, run through `ip netns exec`.
 */
function iptablesLoss(bin: string): Loss {
  const match = ["-p", "udp", "--dport", UDP_PORT];
  return {
    name: `${bin} statistic`,
    async install(ns) {
      await must("ip", ["netns", "exec", ns, bin, "-A", "INPUT", ...match]);
      await must("ip", [
        ...["netns", "exec", ns, bin, "-A", "INPUT", ...match],
        ...["-m", "statistic", "--mode", "random", "--probability", String(LOSS), "-j", "DROP"],
      ]);
    },
    async count(ns) {
      const out = await must("ip", ["netns", "exec", ns, bin, "-L", "INPUT", "-v", "-n", "-x"]);
      // One line per rule: "pkts bytes target prot ... udp dpt:3000 ...".
      const rules = out.split("\n").filter((l) => l.includes(`dpt:${UDP_PORT}`));
      const pkts = (l: string | undefined) => Number(l?.trim().split(/\s+/)[0]);
      const seen = pkts(rules.find((l) => !/\bDROP\b/.test(l)));
      const dropped = pkts(rules.find((l) => /\bDROP\b/.test(l)));
      if (!(seen >= 0 && dropped >= 0)) throw new Error(`Unexpected iptables output: ${out}`);
      return { seen, dropped };
    },
  };
}

/** Why the test cannot run here, or undefined when it can. */
async function unavailable(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not root";
  if (!(await run("ip", ["-V"])).ok) return "no `ip` (install iproute2)";
  return undefined;
}

/**
 * The loss this machine can inject, tried in a throwaway namespace: netem
 * where the kernel has it (some VM kernels are built without `sch_netem`),
 * else iptables' `statistic` match; undefined when neither works.
 */
async function findLoss(): Promise<Loss | undefined> {
  const ns = `lcq${crypto.randomUUID().slice(0, 6)}`;
  if (!(await run("ip", ["netns", "add", ns])).ok) return undefined;
  try {
    const veth = ["-n", ns, "link", "add", "lcqa", "type", "veth", "peer", "name", "lcqb"];
    if ((await run("ip", veth)).ok) {
      const netem = ["-n", ns, "qdisc", "add", "dev", "lcqa", "root", "netem", "loss", "10%"];
      if ((await run("tc", netem)).ok) return NETEM;
    }
    for (const bin of ["iptables", "iptables-legacy"]) {
      const loss = iptablesLoss(bin);
      if (await loss.install(ns, "lcqa").then(() => true, () => false)) return loss;
    }
    return undefined;
  } finally {
    await run("ip", ["netns", "del", ns]);
  }
}

const reason = await unavailable();
const loss = reason === undefined ? await findLoss() : undefined;
const lossName = loss?.name ?? "no way to inject it here";

Deno.test({
  name: `three nodes in network namespaces losing 10% of bus datagrams (${lossName}) ` +
    `deliver every message exactly once, in order${
      reason === undefined ? "" : ` (skipped: ${reason})`
    }`,
  ignore: reason !== undefined,
  async fn() {
    if (loss === undefined) {
      throw new Error(
        "Cannot inject packet loss: install iptables (or use a kernel with sch_netem)",
      );
    }
    const id = crypto.randomUUID().slice(0, 4);
    const bridge = `lcbr${id}`;
    const ns = (i: number) => `lcns${id}${i}`;
    const peer = (i: number) => `lcp${id}${i}`;
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
        await must("ip", ["netns", "add", ns(i)]);
        created.ns.push(i);
        await must("ip", ["link", "add", host, "type", "veth", "peer", "name", peer(i)]);
        await must("ip", ["link", "set", peer(i), "netns", ns(i)]);
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
          peer(i),
        ]);
        await must("ip", ["-n", ns(i), "link", "set", peer(i), "up"]);
        await must("ip", ["-n", ns(i), "link", "set", "lo", "up"]);
        await loss.install(ns(i), peer(i));
      }
      const flags = [
        "netns",
        "exec",
        "",
        "deno",
        "run",
        "--quiet",
        "--no-prompt",
        `--allow-net=0.0.0.0,127.0.0.1,${BROADCAST}`,
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
              CHAT_UDP_PORT: UDP_PORT,
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
        const frames = s.frames.filter((f) =>
          f["cmd"] === 10 || f["cmd"] === 11 || f["cmd"] === 20
        );
        strictEqual(frames.length, expected, `user ${k + 1} gets ${expected} messages, no more`);
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

      // The loss was real: every namespace dropped datagrams, about 10% overall.
      const counts = await Promise.all(NODES.map((i) => loss.count(ns(i), peer(i))));
      for (const [k, c] of counts.entries()) {
        ok(c.dropped > 0, `node ${k + 1} lost no packet (saw ${c.seen})`);
      }
      const seen = counts.reduce((n, c) => n + c.seen, 0);
      const dropped = counts.reduce((n, c) => n + c.dropped, 0);
      ok(seen >= 300, `too few packets to judge the loss: ${seen}`);
      const rate = dropped / seen;
      ok(rate > 0.04 && rate < 0.2, `dropped ${dropped} of ${seen} packets (${rate}), not ~10%`);
    } finally {
      await Promise.all(sockets.map((s) => s.close()));
      await Promise.all(nodes.map((n) => n.stop()));
      for (const i of created.ns) await run("ip", ["netns", "del", ns(i)]);
      if (created.bridge) await run("ip", ["link", "del", bridge]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
