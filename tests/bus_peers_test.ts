import { deepStrictEqual } from "node:assert/strict";
import { PeerWatch, repairAfterLoss } from "../lib/bus_peers.ts";
import { captureLogs } from "./_logs.ts";

Deno.test("PeerWatch reports a node silent past the timeout once, and watches it again when it speaks", () => {
  const peers = new PeerWatch(300);
  peers.heard("a", "e1", 1000);
  peers.heard("b", "e1", 1000);
  deepStrictEqual(peers.lost(1300), []);
  peers.heard("b", "e1", 1250);
  deepStrictEqual(peers.lost(1301), ["a"]);
  deepStrictEqual(peers.lost(1400), [], "reported once");
  deepStrictEqual(peers.size, 1);
  peers.heard("a", "e1", 1500);
  deepStrictEqual(peers.lost(1600), ["b"]);
  deepStrictEqual(peers.lost(1801), ["a"]);
  deepStrictEqual(peers.size, 0);
});

Deno.test("PeerWatch reports a lost node heard again once, with when it went silent", () => {
  const peers = new PeerWatch(300);
  peers.heard("a", "e1", 1000);
  peers.heard("b", "e1", 1000);
  deepStrictEqual(peers.lost(1400).sort(), ["a", "b"]);
  deepStrictEqual(peers.returned(), [], "nobody back yet");
  peers.heard("a", "e1", 9000); // a partition healed
  peers.heard("a", "e1", 9100);
  deepStrictEqual(peers.returned(), [{ nodeId: "a", silentSince: 1000 }]);
  deepStrictEqual(peers.returned(), [], "reported once");
  deepStrictEqual(peers.lost(9200), []);
  peers.heard("c", "e1", 9300); // never lost: not a return
  deepStrictEqual(peers.returned(), []);
});

Deno.test("PeerWatch reports a node that restarted within the timeout (a new epoch) once", () => {
  const peers = new PeerWatch(3000);
  peers.heard("a", "e1", 1000);
  deepStrictEqual(peers.lost(1100), []);
  peers.heard("a", "e2", 1200); // back after a crash, well inside the timeout
  peers.heard("a", "e2", 1300);
  deepStrictEqual(peers.lost(1400), ["a"]);
  deepStrictEqual(peers.lost(1500), []);
  deepStrictEqual(peers.size, 1, "still watched");
});

Deno.test("repairAfterLoss() says what happened in its log line and hands on the store's heads", async () => {
  await using logs = await captureLogs();
  const emitted: unknown[] = [];
  for (const event of [undefined, "came back"]) {
    await repairAfterLoss(["rel0"], {
      ...(event === undefined ? {} : { event }),
      load: (since) => Promise.resolve([{ conv: "u:1:2", seq: since }]),
      sinceTs: 5,
      emit: (heads) => emitted.push(heads),
    });
  }
  deepStrictEqual(emitted, [[{ conv: "u:1:2", seq: 5 }], [{ conv: "u:1:2", seq: 5 }]]);
  // tests/reliability/faults_test.ts waits for this wording in a node's log: the
  // event is part of the template, not a (quoted) property.
  deepStrictEqual(logs.records.map((r) => String(r.rawMessage)), [
    "Node(s) {nodes} went silent; checking {count} recent conversations against the store",
    "Node(s) {nodes} came back; checking {count} recent conversations against the store",
  ]);
});
