/**
 * Exactly once, in order (issue 8, item 1): real `deno run main.ts` nodes
 * sharing one store, on the UDP bus (loopback broadcast) and on the Redis
 * bus (Postgres in its own database), 500 real websocket clients spread
 * over the nodes, 20,000 messages 1:1 and group. Every client must end with
 * every seq of each of its conversations: zero missing, zero duplicated,
 * zero reordered, asserted as counts.
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { pgUrl, RedisServer, startCluster, tempPgDatabase, waitNoSessions } from "./_harness.ts";
import { connectAll, planWorkload, sendAll, settle } from "./_workload.ts";

/** One cluster run; returns nothing, asserts counts. */
async function exactlyOnce(options: {
  nodes: number;
  bus: "udp" | "redis";
  postgres: boolean;
  users: number;
  direct: number;
  group: number;
  messages: number;
}): Promise<void> {
  await using redis = new RedisServer();
  if (options.bus === "redis") await redis.start();
  const db = options.postgres ? await tempPgDatabase() : undefined;
  try {
    await using cluster = await startCluster({
      nodes: options.nodes,
      bus: options.bus === "udp" ? "udp" : redis.url,
      ...(db === undefined ? {} : { pg: db.url }),
      users: options.users,
      groupSize: 10,
    });
    const w = planWorkload(cluster.fixture, options);
    strictEqual(w.clients.length, options.users);
    strictEqual(w.total, options.messages, "planned message count");
    await connectAll(w.clients, (i) => cluster.chatUrl(i % options.nodes));
    try {
      await sendAll(w);
      const t = await settle(w);
      deepStrictEqual(
        { missing: t.missing, duplicated: t.duplicated, reordered: t.reordered },
        { missing: 0, duplicated: 0, reordered: 0 },
        t.samples.slice(0, 10).join("; "),
      );
      strictEqual(w.clients.reduce((n, c) => n + c.errors, 0), 0, "no error frames");
    } finally {
      await Promise.all(w.clients.map((c) => c.close()));
    }
    deepStrictEqual(
      await waitNoSessions(cluster.nodes),
      cluster.nodes.map(() => 0),
      "no sessions left",
    );
  } finally {
    await db?.dispose();
  }
}

/** The load issue 8 asks of every cluster shape: 500 clients, 20,000 messages 1:1 and group. */
const ISSUE_LOAD = { users: 500, direct: 30, group: 10, messages: 20_000 } as const;

Deno.test("two nodes on the UDP bus deliver 20,000 messages of 500 clients exactly once, in order", () =>
  exactlyOnce({
    nodes: 2,
    bus: "udp",
    postgres: false,
    ...ISSUE_LOAD,
  }));

Deno.test("three nodes on the UDP bus deliver 20,000 messages of 500 clients exactly once, in order", () =>
  exactlyOnce({
    nodes: 3,
    bus: "udp",
    postgres: false,
    ...ISSUE_LOAD,
  }));

Deno.test({
  name: "three nodes on the Redis bus with Postgres deliver 20,000 messages of 500 clients " +
    "exactly once, in order",
  ignore: pgUrl() === undefined,
  fn: () =>
    exactlyOnce({
      nodes: 3,
      bus: "redis",
      postgres: true,
      ...ISSUE_LOAD,
    }),
});

Deno.test({
  name: "two nodes on the Redis bus with Postgres deliver 20,000 messages of 500 clients " +
    "exactly once, in order",
  ignore: pgUrl() === undefined,
  fn: () =>
    exactlyOnce({
      nodes: 2,
      bus: "redis",
      postgres: true,
      ...ISSUE_LOAD,
    }),
});
