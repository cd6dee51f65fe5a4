/**
 * Operations pieces in one process: the Prometheus registry's text format,
 * the lanchat metric set, the store timing wrapper, /healthz, /readyz and
 * /metrics, the drain gate for websocket upgrades, and ChatService.drain()
 * waiting for a store in flight before closing with 4002.
 */

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import type { Bus } from "../lib/bus.ts";
import { LocalBus } from "../lib/bus_local.ts";
import { ChatMetrics } from "../lib/chat_metrics.ts";
import { ChatService } from "../lib/chat_service.ts";
import { CLOSE } from "../lib/close_codes.ts";
import { DrainState, waitUntil } from "../lib/drain.ts";
import { drainGate, opsRoutes } from "../lib/http/ops_routes.ts";
import { METRICS_CONTENT_TYPE, Registry } from "../lib/metrics.ts";
import type { PublicUser, Store } from "../lib/store.ts";
import { timedStore } from "../lib/store_timed.ts";
import { FakeConnection, openTestStore } from "./_chat_helpers.ts";

const INFO = {} as Deno.ServeHandlerInfo;

Deno.test("the registry renders counters, gauges, histograms and collected series", () => {
  const r = new Registry();
  const c = r.counter("x_total", "Things\ncounted");
  c.inc();
  c.inc({ kind: 'a"b\\c' }, 2);
  const g = r.gauge("x_level", "Level");
  g.set(3);
  g.inc({}, -1);
  const h = r.histogram("x_seconds", "Time", { buckets: [0.1, 1] });
  h.observe(0.05, { op: "get" });
  // An observer writes into the same series as observe() with equal labels.
  const get = h.observer({ op: "get" });
  get(0.5);
  h.observe(5, { op: "get" });
  r.collect("x_live", "Live", () => [[{}, 7]]);
  strictEqual(
    r.render(),
    [
      "# HELP x_total Things\\ncounted",
      "# TYPE x_total counter",
      "x_total 1",
      'x_total{kind="a\\"b\\\\c"} 2',
      "# HELP x_level Level",
      "# TYPE x_level gauge",
      "x_level 2",
      "# HELP x_seconds Time",
      "# TYPE x_seconds histogram",
      'x_seconds_bucket{le="0.1",op="get"} 1',
      'x_seconds_bucket{le="1",op="get"} 2',
      'x_seconds_bucket{le="+Inf",op="get"} 3',
      'x_seconds_sum{op="get"} 5.55',
      'x_seconds_count{op="get"} 3',
      "# HELP x_live Live",
      "# TYPE x_live gauge",
      "x_live 7",
      "",
    ].join("\n"),
  );
});

Deno.test("the registry refuses bad names, duplicates and counters going down", async (t) => {
  const r = new Registry();
  r.counter("a_total", "A");
  for (
    const [name, fn] of [
      ["duplicate", () => r.counter("a_total", "again")],
      ["bad metric name", () => r.gauge("1bad", "x")],
      ["bad label name", () => r.counter("b_total", "B").inc({ "bad-label": "x" })],
      ["negative increment", () => r.counter("c_total", "C").inc({}, -1)],
      ["unsorted buckets", () => r.histogram("d_seconds", "D", { buckets: [1, 0.5] })],
    ] as const
  ) {
    await t.step(name, () => throws(fn));
  }
});

Deno.test("lanchat metrics count messages, closes, overflows, bus stats, store calls and loop lag", () => {
  const r = new Registry();
  let draining = false;
  const m = new ChatMetrics(r, {
    sessions: () => 2,
    busStats: () => ({
      sent: 5,
      received: 4,
      dropped: 1,
      badSignature: 3,
      replayed: 0,
      malformed: 0,
      oversized: 0,
    }),
    draining: () => draining,
    memory: () => ({ rss: 50_000_000, heapUsed: 20_000_000 }),
  });
  m.messageIn();
  m.messageOut();
  m.messageOut();
  m.serverClosed(CLOSE.queueOverflow.code);
  m.serverClosed(CLOSE.reconnectElsewhere.code);
  m.storeCall("appendMessage", 0.002);
  m.loopLag(0);
  m.loopLag(0.007);
  draining = true;
  const page = r.render();
  for (
    const line of [
      "lanchat_connections 2",
      "lanchat_messages_in_total 1",
      "lanchat_messages_out_total 2",
      "lanchat_queue_overflows_total 1",
      'lanchat_ws_server_closes_total{code="4000"} 1',
      'lanchat_ws_server_closes_total{code="4002"} 1',
      "lanchat_bus_sent_total 5",
      "lanchat_bus_received_total 4",
      "lanchat_bus_dropped_total 1",
      "lanchat_bus_bad_signature_total 3",
      'lanchat_store_seconds_count{op="appendMessage"} 1',
      'lanchat_event_loop_lag_seconds_bucket{le="0.005"} 1',
      'lanchat_event_loop_lag_seconds_bucket{le="0.01"} 2',
      "lanchat_event_loop_lag_seconds_count 2",
      "lanchat_draining 1",
      "lanchat_process_resident_memory_bytes 50000000",
      "lanchat_process_heap_used_bytes 20000000",
    ]
  ) ok(page.split("\n").includes(line), `missing: ${line}\n${page}`);
});

Deno.test("timedStore() times every async call and keeps the store working", async () => {
  const { store, dispose } = await openTestStore("sqlite");
  try {
    const seen: [string, number][] = [];
    let clock = 0;
    const timed = timedStore(store, (op, s) => seen.push([op, s]), { now: () => (clock += 5) });
    await timed.ping();
    strictEqual(await timed.findUser(12345), undefined);
    deepStrictEqual(seen, [["ping", 0.005], ["findUser", 0.005]]);
    strictEqual(timed.findUser, timed.findUser);
  } finally {
    await dispose();
  }
});

Deno.test("/healthz, /readyz and /metrics answer as documented", async (t) => {
  const drain = new DrainState();
  let storeUp = true;
  const registry = new Registry();
  registry.counter("up_total", "Up").inc();
  const app = opsRoutes({
    drain,
    registry,
    checkTimeoutMs: 50,
    checks: [
      {
        name: "store",
        check: () => storeUp ? Promise.resolve() : Promise.reject(new Error("down")),
      },
      { name: "bus", check: () => Promise.resolve() },
    ],
  });
  const get = async (path: string) => {
    const res = await app.request(path);
    return { status: res.status, text: await res.text(), type: res.headers.get("content-type") };
  };
  await t.step("alive and ready", async () => {
    deepStrictEqual((await get("/healthz")).status, 200);
    deepStrictEqual(await get("/readyz"), {
      status: 200,
      text: "ready\n",
      type: "text/plain;charset=UTF-8",
    });
  });
  await t.step("a failing check makes it not ready", async () => {
    storeUp = false;
    const r = await get("/readyz");
    strictEqual(r.status, 503);
    strictEqual(r.text, "not ready: store\n");
    storeUp = true;
  });
  await t.step("metrics in the Prometheus text format", async () => {
    const r = await get("/metrics");
    strictEqual(r.type, METRICS_CONTENT_TYPE);
    ok(r.text.includes("up_total 1\n"));
  });
  await t.step("draining: not ready, still alive", async () => {
    drain.start();
    deepStrictEqual((await get("/readyz")).status, 503);
    deepStrictEqual((await get("/healthz")).status, 200);
    strictEqual(drain.start(), false);
  });
});

Deno.test("the drain gate refuses websocket upgrades only while draining", async () => {
  const drain = new DrainState();
  const gated = drainGate(() => new Response("passed"), drain);
  const upgrade = () =>
    new Request("http://x/chat", { headers: { upgrade: "websocket", connection: "Upgrade" } });
  strictEqual(await (await gated(upgrade(), INFO)).text(), "passed");
  drain.start();
  const refused = await gated(upgrade(), INFO);
  strictEqual(refused.status, 503);
  strictEqual(refused.headers.get("retry-after"), "1");
  strictEqual((await refused.json()).code, -1);
  strictEqual(await (await gated(new Request("http://x/user/login"), INFO)).text(), "passed");
});

/** Users A and B of `store`, friends. */
async function twoFriends(store: Store): Promise<[PublicUser, PublicUser]> {
  const user = (mobile: string, nickname: string) =>
    store.createUser(
      { mobile, passwordHash: "x", nickname, avatar: "", sex: "U", memo: "" },
      Date.now(),
    );
  const a = await user("13600000001", "A");
  const b = await user("13600000002", "B");
  await store.addFriendship(a.id, b.id, Date.now());
  return [a, b];
}

Deno.test("drain() stores the message in flight, acks it, then closes with 4002", async () => {
  const { store, dispose } = await openTestStore("sqlite");
  const bus = new LocalBus();
  try {
    const [a, b] = await twoFriends(store);
    // appendMessage waits until the test lets it finish.
    const gate = Promise.withResolvers<void>();
    let appending = false;
    const slowAppend: Store["appendMessage"] = async (m, now) => {
      appending = true;
      await gate.promise;
      return await store.appendMessage(m, now);
    };
    const slow = new Proxy(store, {
      get(target, prop) {
        if (prop === "appendMessage") return slowAppend;
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const chat = new ChatService({ store: slow, bus, catchUpGraceMs: 0 });
    const conn = new FakeConnection();
    const session = chat.open(conn, a.id);
    session.receive(JSON.stringify({ cmd: 10, dstid: b.id, media: 1, content: "hi", cid: "c1" }));
    ok(await waitUntil(() => appending, { timeoutMs: 2000, intervalMs: 5 }));

    let drained = false;
    const draining = chat.drain(5000).then(() => drained = true);
    await new Promise((r) => setTimeout(r, 30));
    strictEqual(drained, false);
    strictEqual(conn.closed, undefined);
    gate.resolve();
    await draining;
    const acks = conn.frames().filter((f) => f["cmd"] === 20);
    strictEqual(acks.length, 1);
    strictEqual(acks[0]!["cid"], "c1");
    deepStrictEqual(conn.closed, {
      code: CLOSE.reconnectElsewhere.code,
      reason: CLOSE.reconnectElsewhere.reason,
    });
    strictEqual(
      (await store.listMessages(String(acks[0]!["conv"]), { afterSeq: 0, limit: 10 })).length,
      1,
    );
    chat.close();
  } finally {
    await bus.close();
    await dispose();
  }
});

Deno.test("drain() waits for the bus to take a stored message before its ack, then closes with 4002", async () => {
  const { store, dispose } = await openTestStore("sqlite");
  const inner = new LocalBus();
  try {
    const [a, b] = await twoFriends(store);
    // The bus takes the message only when the test lets it (as a signed UDP or Redis publish).
    const gate = Promise.withResolvers<void>();
    let publishing = false;
    const bus: Bus = {
      publish: (envelope) => {
        publishing = true;
        inner.publish(envelope);
        return gate.promise;
      },
      subscribe: (handler) => inner.subscribe(handler),
      ping: () => inner.ping(),
      close: () => inner.close(),
      stats: () => inner.stats(),
    };
    const chat = new ChatService({ store, bus, catchUpGraceMs: 0 });
    const conn = new FakeConnection();
    const session = chat.open(conn, a.id);
    session.receive(JSON.stringify({ cmd: 10, dstid: b.id, media: 1, content: "hi", cid: "c1" }));
    ok(await waitUntil(() => publishing, { timeoutMs: 2000, intervalMs: 5 }));
    await session.settled();

    let drained = false;
    const draining = chat.drain(5000).then(() => drained = true);
    await new Promise((r) => setTimeout(r, 30));
    strictEqual(drained, false);
    strictEqual(conn.closed, undefined);
    gate.resolve();
    await draining;
    deepStrictEqual(conn.frames().map((f) => [f["cmd"], f["cid"]]), [[20, "c1"]]);
    deepStrictEqual(conn.closed, {
      code: CLOSE.reconnectElsewhere.code,
      reason: CLOSE.reconnectElsewhere.reason,
    });
    chat.close();
  } finally {
    await inner.close();
    await dispose();
  }
});

Deno.test("CHAT_METRICS_ADDR is parsed and asks for its own --allow-net", async (t) => {
  const { parseConfig } = await import("../lib/config.ts");
  const { neededPermissions } = await import("../lib/permissions.ts");
  const paths = { staticDir: "static", templatesDir: "templates" };
  await t.step("unset: same listener", () => {
    strictEqual(parseConfig({}).metricsAddr, undefined);
  });
  await t.step("host:port, flag wins", () => {
    const config = parseConfig({ CHAT_METRICS_ADDR: "127.0.0.1:9090" }, {
      args: ["--metrics-addr", "10.0.0.5:9100"],
    });
    deepStrictEqual(config.metricsAddr, { host: "10.0.0.5", port: 9100 });
    const flags = neededPermissions(config, paths).map((n) => n.flag);
    ok(flags.includes("--allow-net=10.0.0.5"));
  });
  await t.step("a bad value names the setting", () => {
    throws(
      () => parseConfig({ CHAT_METRICS_ADDR: "9090" }),
      /^ConfigError: Invalid CHAT_METRICS_ADDR: must be host:port/,
    );
  });
});
