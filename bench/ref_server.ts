/**
 * The bench's reference server: the smallest Deno websocket server that
 * speaks the part of docs/protocol.md the load generator uses — token in the
 * query, catch-up answered with an empty cmd 31, 1:1 (ack + delivery) and
 * group fan-out (one encode shared by every member) — with NO store, no
 * friendship or membership checks and no queue limits, like the original
 * Go design. Its figures are the ceiling this machine, runtime and generator
 * allow; lanchat's figures are reported as ratios against it.
 *
 * ```
 * deno run --allow-net=127.0.0.1 --allow-read=/tmp bench/ref_server.ts --port 8081 --tokens /tmp/x/tokens.json
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { FixtureGroup, FixtureUser } from "./fixture.ts";

/** What one socket needs: its user and the send function. */
interface Peer {
  readonly userId: number;
  readonly socket: WebSocket;
}

/** The in-memory routing of the reference server. */
class RefHub {
  #tokens: Map<string, number>;
  #groups: Map<number, readonly number[]>;
  #users = new Map<number, Set<Peer>>();
  #seqs = new Map<string, number>();
  #nextId = 1;

  constructor(users: FixtureUser[], groups: FixtureGroup[]) {
    this.#tokens = new Map(users.map((u) => [u.token, u.id]));
    this.#groups = new Map(groups.map((g) => [g.id, g.members]));
  }

  userOf(token: string): number | undefined {
    return this.#tokens.get(token);
  }

  add(peer: Peer): void {
    let set = this.#users.get(peer.userId);
    if (set === undefined) this.#users.set(peer.userId, set = new Set());
    set.add(peer);
  }

  remove(peer: Peer): void {
    const set = this.#users.get(peer.userId);
    set?.delete(peer);
    if (set?.size === 0) this.#users.delete(peer.userId);
  }

  receive(peer: Peer, data: unknown): void {
    if (typeof data !== "string") return;
    const frame = JSON.parse(data) as Record<string, unknown>;
    const cmd = frame["cmd"];
    if (cmd === 0) {
      peer.socket.send('{"cmd":0}');
    } else if (cmd === 30) {
      peer.socket.send('{"cmd":31,"seqs":{}}');
    } else if (cmd === 10 || cmd === 11) {
      this.#chat(peer, frame, cmd);
    }
  }

  #chat(peer: Peer, frame: Record<string, unknown>, cmd: number): void {
    const dstid = Number(frame["dstid"]);
    const userid = peer.userId;
    const conv = cmd === 11
      ? `g:${dstid}`
      : `u:${Math.min(userid, dstid)}:${Math.max(userid, dstid)}`;
    const seq = (this.#seqs.get(conv) ?? 0) + 1;
    this.#seqs.set(conv, seq);
    const id = this.#nextId++;
    const ts = Date.now();
    const cid = String(frame["cid"] ?? "");
    peer.socket.send(JSON.stringify({ cmd: 20, cid, seq, id, conv, ts, dup: false }));
    const text = JSON.stringify({
      id,
      userid,
      cmd,
      dstid,
      media: frame["media"],
      content: frame["content"] ?? "",
      pic: "",
      url: "",
      memo: "",
      amount: 0,
      cid,
      conv,
      seq,
      ts,
    });
    const targets = cmd === 11 ? this.#groups.get(dstid) ?? [] : [dstid, userid];
    for (const user of targets) {
      for (const p of this.#users.get(user) ?? []) {
        if (p !== peer && p.socket.readyState === WebSocket.OPEN) p.socket.send(text);
      }
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string" }, tokens: { type: "string" } },
  });
  if (values.port === undefined || values.tokens === undefined) {
    throw new TypeError("Usage: ref_server.ts --port <n> --tokens <tokens.json>");
  }
  const users = JSON.parse(await Deno.readTextFile(values.tokens)) as FixtureUser[];
  const groups = JSON.parse(
    await Deno.readTextFile(`${values.tokens}.groups.json`),
  ) as FixtureGroup[];
  const hub = new RefHub(users, groups);
  const shutdown = new AbortController();
  Deno.addSignalListener("SIGTERM", () => shutdown.abort());
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: Number(values.port),
    signal: shutdown.signal,
    onListen() {},
  }, (req) => {
    const userId = hub.userOf(new URL(req.url).searchParams.get("token") ?? "");
    if (userId === undefined) return new Response("unauthorized", { status: 401 });
    const { socket, response } = Deno.upgradeWebSocket(req);
    const peer: Peer = { userId, socket };
    socket.onopen = () => hub.add(peer);
    socket.onmessage = (e) => hub.receive(peer, e.data);
    socket.onclose = () => hub.remove(peer);
    socket.onerror = () => {};
    return response;
  });
  await server.finished;
  Deno.exit(0);
}

if (import.meta.main) await main();
