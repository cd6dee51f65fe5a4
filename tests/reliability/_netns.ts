/**
 * Nodes as hosts, for the network faults of faults_net_test.ts: each real
 * `deno run main.ts` node in its own network namespace, on a bridge, on a
 * private subnet (10.201.0.0/24, used by no other test) that exists only
 * while the test runs. The UDP bus broadcasts to 10.201.0.255; the host is
 * 10.201.0.1 on the bridge, where the test's clients connect from. The
 * nodes share one SQLite file (the namespaces share the filesystem).
 *
 * Faults are kernel rules inside the namespaces, on the bus's UDP port
 * only: {@linkcode busLoss} (iptables `statistic` DROP in INPUT) and
 * {@linkcode busReorder} (an htb qdisc whose slow class holds back a random
 * share of the bus datagrams, chosen by iptables CLASSIFY). Deleting the
 * namespaces and the bridge is the whole cleanup; the host's tables are
 * never touched.
 *
 * @module
 */

import type { Fixture } from "../../bench/fixture.ts";
import { createFixture } from "../../bench/fixture.ts";
import { join } from "node:path";
import { ROOT, startNode } from "../_node_helpers.ts";
import { nodeArgs, type RemoteNode, until } from "./_harness.ts";
import { must, run } from "../_command.ts";

/** The first three octets of the test subnet. */
const SUBNET = "10.201.0";
const BROADCAST = `${SUBNET}.255`;
/** UDP port of the bus in every namespace. */
const BUS_PORT = 3000;
const CHAT_PORT = 8080;
const METRICS_PORT = 9090;
/** Each node's V8 inspector (the leak check forces a GC through it). */
const INSPECT_PORT = 9229;

/** Why namespaces cannot be made here, or undefined when they can. */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not root";
  if (!(await run("ip", ["-V"])).ok) return "no `ip` (install iproute2)";
  if (!(await run("tc", ["-V"])).ok) return "no `tc` (install iproute2)";
  return undefined;
}

/** Nodes in namespaces over one store, with the fixture's users and groups. */
export interface NetnsCluster extends AsyncDisposable {
  readonly nodes: RemoteNode[];
  readonly fixture: Fixture;
  /** ws://10.201.0.x:8080/chat of node `i`. */
  chatUrl(i: number): string;
  /** Run `cmd args` in node `i`'s namespace; its stdout. */
  exec(i: number, cmd: string, args: string[]): Promise<string>;
  /** Node `i`'s link to the bridge (inside its namespace). */
  link(i: number): string;
  /** `iptables` or `iptables-legacy`, whichever works in the namespaces. */
  readonly iptables: string;
}

/** Options of {@linkcode startNetnsCluster}. */
export interface NetnsClusterOptions {
  readonly nodes: number;
  readonly users: number;
  readonly groupSize: number;
}

/** Make the bridge and namespaces, write the fixture, start a node in each namespace. */
export async function startNetnsCluster(options: NetnsClusterOptions): Promise<NetnsCluster> {
  const id = crypto.randomUUID().slice(0, 4);
  const bridge = `lfbr${id}`;
  const ns = (i: number) => `lfns${id}${i}`;
  const link = (i: number) => `lfp${id}${i}`;
  const ip = (i: number) => `${SUBNET}.${11 + i}`;
  const made = { bridge: false, ns: [] as number[] };
  const nodes: RemoteNode[] = [];
  const dir = await Deno.makeTempDir({ prefix: "lanchat-netfault-" });
  const dispose = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    for (const i of made.ns) await run("ip", ["netns", "del", ns(i)]);
    if (made.bridge) await run("ip", ["link", "del", bridge]);
    await Deno.remove(dir, { recursive: true });
  };
  try {
    await must("ip", ["link", "add", bridge, "type", "bridge"]);
    made.bridge = true;
    await must("ip", ["addr", "add", `${SUBNET}.1/24`, "dev", bridge]);
    await must("ip", ["link", "set", bridge, "up"]);
    for (let i = 0; i < options.nodes; i++) {
      const host = `lfv${id}${i}`;
      await must("ip", ["netns", "add", ns(i)]);
      made.ns.push(i);
      await must("ip", ["link", "add", host, "type", "veth", "peer", "name", link(i)]);
      await must("ip", ["link", "set", link(i), "netns", ns(i)]);
      await must("ip", ["link", "set", host, "master", bridge]);
      await must("ip", ["link", "set", host, "up"]);
      const addr = `${ip(i)}/24`;
      await must("ip", ["-n", ns(i), "addr", "add", addr, "broadcast", BROADCAST, "dev", link(i)]);
      await must("ip", ["-n", ns(i), "link", "set", link(i), "up"]);
      await must("ip", ["-n", ns(i), "link", "set", "lo", "up"]);
    }
    let iptables = "";
    for (const bin of ["iptables", "iptables-legacy"]) {
      if (!(await run("ip", ["netns", "exec", ns(0), bin, "-L", "-n"])).ok) continue;
      iptables = bin;
      break;
    }
    if (iptables === "") throw new Error("No working iptables (install iptables)");
    const fixture = await createFixture({ kind: "sqlite", path: join(dir, "chat.db") }, {
      users: options.users,
      groupSize: options.groupSize,
    });
    for (let i = 0; i < options.nodes; i++) {
      const node = await startNode({
        command: "ip",
        args: ["netns", "exec", ns(i), "deno", ...nodeArgs(dir, ["0.0.0.0", BROADCAST])],
        cwd: ROOT,
        inspect: { host: ip(i), port: INSPECT_PORT },
        env: {
          HOST: "0.0.0.0",
          PORT: String(CHAT_PORT),
          CHAT_DATA: dir,
          CHAT_BUS: "udp",
          CHAT_BROADCAST: BROADCAST,
          CHAT_UDP_PORT: String(BUS_PORT),
          CHAT_SECRET: "netfault-test-secret-0123456789",
          CHAT_NODE_ID: `nf${i}`,
          CHAT_METRICS_ADDR: `0.0.0.0:${METRICS_PORT}`,
        },
      });
      nodes.push(Object.assign(node, { metricsHost: ip(i) }));
    }
    return {
      nodes,
      fixture,
      iptables,
      chatUrl: (i) => `ws://${ip(i)}:${CHAT_PORT}/chat`,
      exec: (i, cmd, args) => must("ip", ["netns", "exec", ns(i), cmd, ...args]),
      link,
      [Symbol.asyncDispose]: dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** A fault on the bus datagrams of every node. */
export interface NetFault {
  /** Shown in the test name. */
  readonly name: string;
  /** Add the fault to node `i` of `cluster`. */
  install(cluster: NetnsCluster, i: number): Promise<void>;
  /** Resolves once the fault holds no datagram back any more (bounded wait). */
  settled(cluster: NetnsCluster): Promise<void>;
  /** Read every node's kernel counters; throws (naming them) unless they show the fault happened. */
  verify(cluster: NetnsCluster): Promise<void>;
}

const BUS_MATCH = ["-p", "udp", "--dport", String(BUS_PORT)];

/** Packets (first column) of the bus-port rules in `iptables -L -v -n -x`, by whether `target` is theirs. */
function rulePackets(listing: string, target: string): { plain: number; target: number } {
  const lines = listing.split("\n").filter((l) => l.includes(`dpt:${BUS_PORT}`));
  const pkts = (l: string | undefined) => Number(l?.trim().split(/\s+/)[0]);
  const plain = pkts(lines.find((l) => !l.includes(target)));
  const hit = pkts(lines.find((l) => l.includes(target)));
  if (!(plain >= 0 && hit >= 0)) throw new Error(`Unexpected iptables listing: ${listing}`);
  return { plain, target: hit };
}

/** Every node index of `cluster`. */
function each<T>(cluster: NetnsCluster, f: (i: number) => Promise<T>): Promise<T[]> {
  return Promise.all(cluster.nodes.map((_, i) => f(i)));
}

/**
 * Drop `probability` of the bus datagrams each node receives (a counting
 * rule, then a `statistic` DROP rule, in its INPUT chain). `verify` wants
 * drops on every node and an overall rate within ±60% of `probability`.
 */
export function busLoss(probability: number): NetFault {
  return {
    name: `${Math.round(probability * 100)}% bus datagram loss`,
    async install(cluster, i) {
      const ipt = (args: string[]) => cluster.exec(i, cluster.iptables, args);
      await ipt(["-A", "INPUT", ...BUS_MATCH]);
      await ipt([
        ...["-A", "INPUT", ...BUS_MATCH, "-m", "statistic", "--mode", "random"],
        ...["--probability", String(probability), "-j", "DROP"],
      ]);
    },
    settled: () => Promise.resolve(),
    async verify(cluster) {
      const counts = await each(cluster, async (i) => {
        const out = await cluster.exec(i, cluster.iptables, ["-L", "INPUT", "-v", "-n", "-x"]);
        return rulePackets(out, "DROP");
      });
      const seen = counts.reduce((n, c) => n + c.plain, 0);
      const dropped = counts.reduce((n, c) => n + c.target, 0);
      const line = `dropped ${dropped} of ${seen} bus datagrams (` +
        counts.map((c) => `${c.target}/${c.plain}`).join(", ") + ")";
      if (counts.some((c) => c.target === 0)) throw new Error(`A node lost nothing: ${line}`);
      if (seen < 300) throw new Error(`Too few datagrams to judge the loss: ${line}`);
      const rate = dropped / seen;
      if (Math.abs(rate - probability) > 0.6 * probability) {
        throw new Error(`Loss ${rate.toFixed(3)}, not ~${probability}: ${line}`);
      }
    },
  };
}

/** Counters of one htb class of `tc -s class show`. */
interface ClassCount {
  readonly sent: number;
  readonly dropped: number;
  readonly overlimits: number;
  /** Packets queued in it now. */
  readonly backlog: number;
}

/** The counters of htb class `id` (e.g. "1:20") on node `i`'s link. */
async function htbClass(cluster: NetnsCluster, i: number, id: string): Promise<ClassCount> {
  const show = await cluster.exec(i, "tc", ["-s", "class", "show", "dev", cluster.link(i)]);
  // "class htb 1:20 ...\n Sent 1234 bytes 56 pkt (dropped 0, overlimits 7 requeues 0)\n backlog 0b 0p ..."
  const m = show.match(
    new RegExp(
      `class htb ${id} [^]*?Sent \\d+ bytes (\\d+) pkt \\(dropped (\\d+), overlimits (\\d+)` +
        `[^]*?backlog \\S+ (\\d+)p`,
    ),
  );
  if (m === null) throw new Error(`Unexpected tc output: ${show}`);
  const [sent = 0, dropped = 0, overlimits = 0, backlog = 0] = m.slice(1, 5).map(Number);
  return { sent, dropped, overlimits, backlog };
}

/**
 * Reorder the bus datagrams each node sends: an htb root qdisc on its link
 * with a fast default class 1:10 and a slow class 1:20 (`rateKbit`, a
 * 200-packet pfifo), and an iptables mangle rule putting `probability` of
 * the bus datagrams in 1:20 (CLASSIFY; htb honours skb->priority without a
 * tc filter). What waits in 1:20 goes out after later datagrams of 1:10.
 * `verify` wants datagrams through both classes on every node, and 1:20
 * over its rate (datagrams waiting: htb's `overlimits`) on at least one.
 */
export function busReorder(probability: number, rateKbit: number): NetFault {
  return {
    name: `${Math.round(probability * 100)}% of bus datagrams held back (htb + CLASSIFY)`,
    async install(cluster, i) {
      const tc = (args: string[]) => cluster.exec(i, "tc", args);
      const dev = ["dev", cluster.link(i)];
      const rate = `${rateKbit}kbit`;
      await tc(["qdisc", "add", ...dev, "root", "handle", "1:", "htb", "default", "10"]);
      await tc(["class", "add", ...dev, "parent", "1:", "classid", "1:10", "htb", "rate", "1gbit"]);
      await tc(["class", "add", ...dev, "parent", "1:", "classid", "1:20", "htb", "rate", rate]);
      const fifo = ["pfifo", "limit", "200"];
      await tc(["qdisc", "add", ...dev, "parent", "1:20", "handle", "20:", ...fifo]);
      const ipt = (args: string[]) => cluster.exec(i, cluster.iptables, ["-t", "mangle", ...args]);
      await ipt([
        ...["-A", "POSTROUTING", ...BUS_MATCH, "-m", "statistic", "--mode", "random"],
        ...["--probability", String(probability), "-j", "CLASSIFY", "--set-class", "1:20"],
      ]);
    },
    async settled(cluster) {
      await until(
        async () =>
          (await each(cluster, (i) => htbClass(cluster, i, "1:20"))).every((c) => c.backlog === 0),
        "the slow classes empty",
        30_000,
      );
    },
    async verify(cluster) {
      const counts = await each(cluster, async (i) => ({
        fast: await htbClass(cluster, i, "1:10"),
        slow: await htbClass(cluster, i, "1:20"),
      }));
      const line = counts.map(({ fast, slow }) =>
        `${slow.sent} via 1:20 (overlimits ${slow.overlimits}, dropped ${slow.dropped}), ` +
        `${fast.sent} via 1:10`
      ).join("; ");
      if (counts.some((c) => c.slow.sent === 0 || c.fast.sent === 0)) {
        throw new Error(`A node did not use both classes: ${line}`);
      }
      if (counts.every((c) => c.slow.overlimits === 0)) throw new Error(`Nothing waited: ${line}`);
    },
  };
}
