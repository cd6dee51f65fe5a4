import { deepStrictEqual } from "node:assert/strict";
import { PeerWatch } from "../lib/bus_peers.ts";

Deno.test("PeerWatch reports a node silent past the timeout once, and watches it again when it speaks", () => {
  const peers = new PeerWatch(300);
  peers.heard("a", 1000);
  peers.heard("b", 1000);
  deepStrictEqual(peers.lost(1300), []);
  peers.heard("b", 1250);
  deepStrictEqual(peers.lost(1301), ["a"]);
  deepStrictEqual(peers.lost(1400), [], "reported once");
  deepStrictEqual(peers.size, 1);
  peers.heard("a", 1500);
  deepStrictEqual(peers.lost(1600), ["b"]);
  deepStrictEqual(peers.lost(1801), ["a"]);
  deepStrictEqual(peers.size, 0);
});
