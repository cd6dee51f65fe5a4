/**
 * Graceful drain across two real server processes sharing one data folder:
 * SIGTERM on the node a client is sending through closes its socket with
 * 4002 after the in-flight messages are stored, the node exits 0, and the
 * client reconnects to the other node, resends what was not acked (same
 * `cid`) and catches up: nothing is lost and nothing is stored twice.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { CLOSE } from "../lib/close_codes.ts";
import { delay, type TestSocket } from "./_chat_helpers.ts";
import {
  befriend,
  connectUser,
  getText,
  loopbackUdpBus,
  metricValue,
  register,
  startNode,
} from "./_node_helpers.ts";

const N = 40;

function acksOf(s: TestSocket): Map<string, number> {
  const acks = new Map<string, number>();
  for (const f of s.frames) {
    if (f["cmd"] === 20) acks.set(String(f["cid"]), Number(f["seq"]));
  }
  return acks;
}

function chatFrame(dstid: number, cid: string) {
  return { cmd: 10, dstid, media: 1, content: `message ${cid}`, cid };
}

Deno.test("a client of a draining node reconnects to the other node and loses nothing", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lanchat_drain_" });
  try {
    // The real cluster bus (UDP on loopback) between the two nodes.
    const udp = loopbackUdpBus();
    const env = { ...udp.env, CHAT_DATA: dataDir };
    const extraNet = udp.extraNet;
    await using node1 = await startNode({
      env: { ...env, CHAT_NODE_ID: "n1", CHAT_METRICS_ADDR: "127.0.0.1:0" },
      extraNet,
    });
    await using node2 = await startNode({ env: { ...env, CHAT_NODE_ID: "n2" }, extraNet });
    const base1 = `http://127.0.0.1:${node1.port}`;
    const ws1 = `ws://127.0.0.1:${node1.port}`;
    const ws2 = `ws://127.0.0.1:${node2.port}`;

    const ann = await register(base1, "13800000001", "Ann");
    const bob = await register(base1, "13800000002", "Bob");
    await befriend(base1, ann, bob);
    const conv = `u:${Math.min(ann.id, bob.id)}:${Math.max(ann.id, bob.id)}`;

    const annOn1 = await connectUser(ws1, ann);
    const bobOn2 = await connectUser(ws2, bob);
    const ready = await getText(`http://127.0.0.1:${node1.metricsPort}/readyz`);
    strictEqual(ready.status, 200);

    const page = await getText(`http://127.0.0.1:${node1.metricsPort}/metrics`);
    strictEqual(metricValue(page.text, "lanchat_connections"), 1);
    strictEqual(metricValue(page.text, "lanchat_messages_in_total"), 1);

    // A burst, SIGTERM while its stores are in flight, and more sends while it drains.
    const cids = Array.from({ length: N }, (_, i) => `ann-${i + 1}`);
    for (const cid of cids.slice(0, N / 2)) annOn1.send(chatFrame(bob.id, cid));
    await annOn1.waitFor((f) => f["cmd"] === 20);
    node1.child.kill("SIGTERM");
    const ackedAtSignal = acksOf(annOn1).size;
    for (const cid of cids.slice(N / 2)) {
      if (annOn1.ws.readyState !== WebSocket.OPEN) break;
      annOn1.send(chatFrame(bob.id, cid));
      await delay(2);
    }

    const closeCode = await annOn1.closed;
    // A client still writing when the node drains reads 4002: after its close
    // frame the server reads on until the client's close (lib/ws/raw_socket.ts),
    // so the connection is not reset under the client's last frames.
    strictEqual(closeCode, CLOSE.reconnectElsewhere.code, node1.log());
    strictEqual(await node1.stop(), 0, node1.log());
    const ackedOn1 = acksOf(annOn1);
    // Frames the server had read were stored and acked before the close (the
    // rest never reached it and are resent below); tests/ops_test.ts pins the
    // waiting for a store in flight.
    ok(ackedOn1.size >= ackedAtSignal && ackedOn1.size >= 1);

    // While Ann is away, Bob writes to her.
    bobOn2.send(chatFrame(ann.id, "bob-1"));
    const [bobAck] = await bobOn2.waitFor((f) => f["cmd"] === 20 && f["cid"] === "bob-1");

    // Ann reconnects to node 2, catches up from what she had, and resends the unacked.
    const lastSeen = Math.max(0, ...ackedOn1.values());
    const annOn2 = await connectUser(ws2, ann, { [conv]: lastSeen });
    const missing = cids.filter((cid) => !ackedOn1.has(cid));
    for (const cid of missing) annOn2.send(chatFrame(bob.id, cid));
    await annOn2.waitFor((f) => f["cmd"] === 20, missing.length);

    // Ann got Bob's message by catch-up.
    const fromBob = annOn2.frames.filter((f) => f["cmd"] === 10 && f["cid"] === "bob-1");
    strictEqual(fromBob.length, 1);
    strictEqual(fromBob[0]!["seq"], bobAck!["seq"]);

    // Every message stored exactly once: seqs 1..N+1, one per cid.
    const acks = new Map([...ackedOn1, ...acksOf(annOn2)]);
    deepStrictEqual([...acks.keys()].sort(), [...cids].sort());
    const seqs = [...acks.values(), Number(bobAck!["seq"])].sort((a, b) => a - b);
    deepStrictEqual(seqs, Array.from({ length: N + 1 }, (_, i) => i + 1));

    // Bob, on the surviving node, sees all of Ann's messages once after a catch-up.
    bobOn2.send({ cmd: 30, seqs: { [conv]: 0 }, all: false });
    await bobOn2.waitFor((f) => f["cmd"] === 31, 2);
    const bobSeen = new Set(
      bobOn2.frames.filter((f) => f["cmd"] === 10 && f["userid"] === ann.id).map((f) => f["cid"]),
    );
    deepStrictEqual([...bobSeen].sort(), [...cids].sort());

    await annOn2.close();
    await bobOn2.close();
    strictEqual(await node2.stop(), 0);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
