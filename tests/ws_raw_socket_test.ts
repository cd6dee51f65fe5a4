import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { concatBytes } from "../lib/bytes.ts";
import { OP } from "../lib/ws/frames.ts";
import { type ByteConn, RawWebSocket, type WsHandler } from "../lib/ws/raw_socket.ts";
import { clientFrame, closePayload } from "./_ws_client_frames.ts";

/** A connection the test feeds and whose writes it can hold. */
class FakeConn implements ByteConn {
  readonly writes: Uint8Array[] = [];
  closed = false;
  /** While set, writes wait for it. */
  hold: PromiseWithResolvers<void> | undefined;
  #incoming: (Uint8Array | null)[] = [];
  #reader: ((chunk: Uint8Array | null) => void) | undefined;

  feed(chunk: Uint8Array | null): void {
    if (this.#reader !== undefined) {
      const r = this.#reader;
      this.#reader = undefined;
      r(chunk);
    } else this.#incoming.push(chunk);
  }

  read(p: Uint8Array): Promise<number | null> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    const take = (chunk: Uint8Array | null) => {
      if (chunk === null) return null;
      p.set(chunk.subarray(0, p.length));
      if (chunk.length > p.length) this.#incoming.unshift(chunk.subarray(p.length));
      return Math.min(chunk.length, p.length);
    };
    if (this.#incoming.length > 0) return Promise.resolve(take(this.#incoming.shift()!));
    return new Promise((resolve) => this.#reader = (c) => resolve(take(c)));
  }

  async write(p: Uint8Array): Promise<number> {
    await this.hold?.promise;
    if (this.closed) throw new Deno.errors.BadResource("closed");
    this.writes.push(p.slice());
    return p.length;
  }

  close(): void {
    this.closed = true;
    this.feed(null);
  }

  /** Every byte written, split into the server frames (first byte, payload). */
  frames(): [number, Uint8Array][] {
    const all = concatBytes(this.writes);
    const out: [number, Uint8Array][] = [];
    let at = new TextDecoder().decode(all).indexOf("\r\n\r\n") + 4; // after the preamble
    while (at < all.length) {
      const op = all[at]!;
      let n = all[at + 1]!;
      let h = 2;
      if (n === 126) {
        n = (all[at + 2]! << 8) | all[at + 3]!;
        h = 4;
      }
      out.push([op, all.slice(at + h, at + h + n)]);
      at += h + n;
    }
    return out;
  }
}

class Recorder implements WsHandler {
  readonly events: string[] = [];
  opened(): void {
    this.events.push("open");
  }
  message(data: string | Uint8Array): void {
    this.events.push(typeof data === "string" ? `text:${data}` : `binary:${data.length}`);
  }
  closed(code: number): void {
    this.events.push(`closed:${code}`);
  }
}

const PREAMBLE = new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\n\r\n");
const tick = () => new Promise((r) => setTimeout(r, 0));

function started(options: { closeTimeoutMs?: number; early?: Uint8Array } = {}) {
  const conn = new FakeConn();
  const socket = new RawWebSocket(conn, { closeTimeoutMs: options.closeTimeoutMs ?? 50 });
  const handler = new Recorder();
  socket.bind(handler);
  socket.start(PREAMBLE, options.early ?? new Uint8Array(0));
  return { conn, socket, handler };
}

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("RawWebSocket opens, reads early bytes and frames, and answers pings", async () => {
  const { conn, handler } = started({ early: clientFrame(OP.text, "early") });
  conn.feed(clientFrame(OP.text, "one"));
  conn.feed(clientFrame(OP.ping, "p1"));
  await tick();
  deepStrictEqual(handler.events, ["open", "text:early", "text:one"]);
  deepStrictEqual(conn.frames(), [[0x80 | OP.pong, text("p1")]]);
  strictEqual(new TextDecoder().decode(conn.writes[0]), "HTTP/1.1 101 Switching Protocols\r\n\r\n");
});

Deno.test("RawWebSocket sends frames in order, those queued during a write in one write", async () => {
  const { conn, socket } = started();
  await tick();
  conn.hold = Promise.withResolvers();
  socket.send("a");
  await tick();
  socket.send("b");
  socket.send("c");
  strictEqual(socket.bufferedAmount, 9, "three 3-byte frames waiting");
  const writesBefore = conn.writes.length;
  conn.hold.resolve();
  conn.hold = undefined;
  await tick();
  await tick();
  strictEqual(socket.bufferedAmount, 0);
  strictEqual(conn.writes.length, writesBefore + 2, "a, then b and c together");
  deepStrictEqual(conn.frames().map(([op, p]) => [op, new TextDecoder().decode(p)]), [
    [0x81, "a"],
    [0x81, "b"],
    [0x81, "c"],
  ]);
});

Deno.test("RawWebSocket writes the frames one store batch brings it in one write", async () => {
  const { conn, socket } = started();
  await tick();
  const writesBefore = conn.writes.length;
  // A batch's callers resume together, each in its own microtask, as GroupCommit resolves them.
  const callers = ["ack", "deliver", "more"].map((frame) => {
    const waiter = Promise.withResolvers<void>();
    void waiter.promise.then(() => socket.send(frame));
    return waiter;
  });
  for (const waiter of callers) waiter.resolve();
  socket.send("sync");
  strictEqual(conn.writes.length, writesBefore, "nothing written while the turn goes on");
  await tick();
  strictEqual(conn.writes.length, writesBefore + 1, "one write for the four frames");
  deepStrictEqual(conn.frames().map(([op, p]) => [op, new TextDecoder().decode(p)]), [
    [0x81, "sync"],
    [0x81, "ack"],
    [0x81, "deliver"],
    [0x81, "more"],
  ]);
  socket.send("next turn");
  await tick();
  strictEqual(conn.writes.length, writesBefore + 2);
  strictEqual(socket.bufferedAmount, 0);
});

Deno.test("RawWebSocket echoes the peer's close, reports its code once, then closes the connection", async () => {
  const { conn, socket, handler } = started();
  conn.feed(clientFrame(OP.close, closePayload(4000, "bye")));
  conn.feed(clientFrame(OP.text, "after close"));
  await tick();
  socket.send("ignored");
  await tick();
  deepStrictEqual(handler.events, ["open", "closed:4000"]);
  deepStrictEqual(conn.frames(), [[0x88, closePayload(4000)]]);
  strictEqual(conn.closed, true);
  strictEqual(socket.readyState, 3);
});

Deno.test("RawWebSocket's own close waits for the peer's answer, or gives up with 1006", async () => {
  const answered = started();
  answered.socket.close(4002, "reconnect elsewhere");
  strictEqual(answered.socket.readyState, 2);
  answered.conn.feed(clientFrame(OP.close, closePayload(4002)));
  await tick();
  deepStrictEqual(answered.handler.events, ["open", "closed:4002"]);
  deepStrictEqual(answered.conn.frames(), [[0x88, closePayload(4002, "reconnect elsewhere")]]);
  strictEqual(answered.conn.closed, true);

  const silent = started({ closeTimeoutMs: 30 });
  silent.socket.close(4000, "too slow");
  await new Promise((r) => setTimeout(r, 80));
  deepStrictEqual(silent.handler.events, ["open", "closed:1006"]);
  strictEqual(silent.conn.closed, true);
});

Deno.test("RawWebSocket closes with the protocol error's code on a bad frame, and reads on until the peer hangs up", async () => {
  const { conn, handler } = started({ closeTimeoutMs: 30 });
  conn.feed(clientFrame(OP.text, "unmasked", { masked: false }));
  await tick();
  await tick();
  deepStrictEqual(handler.events, ["open", "closed:1002"]);
  strictEqual(conn.frames()[0]![0], 0x88);
  strictEqual(conn.closed, false, "not hung up on bytes the peer may still send");
  conn.feed(clientFrame(OP.text, "still sending"));
  await tick();
  deepStrictEqual(handler.events, ["open", "closed:1002"], "dropped unread");
  conn.feed(null); // the peer read our close and hung up
  await tick();
  strictEqual(conn.closed, true);

  const silent = started({ closeTimeoutMs: 30 });
  silent.conn.feed(clientFrame(0x3, "bad opcode"));
  await new Promise((r) => setTimeout(r, 80));
  strictEqual(silent.conn.closed, true, "the close timeout ends a peer that never hangs up");
});

Deno.test("RawWebSocket reports 1006 when the connection ends without a close frame", async () => {
  const { conn, handler } = started();
  conn.feed(clientFrame(OP.text, "x"));
  conn.feed(null);
  await tick();
  deepStrictEqual(handler.events, ["open", "text:x", "closed:1006"]);
});

Deno.test("RawWebSocket drops a peer that does not read its close frame", async () => {
  const { conn, socket, handler } = started({ closeTimeoutMs: 30 });
  await tick();
  conn.hold = Promise.withResolvers(); // the peer's window is full
  socket.send("stuck");
  conn.feed(clientFrame(OP.close, closePayload(1000)));
  await tick();
  deepStrictEqual(handler.events, ["open", "closed:1000"]);
  strictEqual(conn.closed, false, "still flushing the echo");
  await new Promise((r) => setTimeout(r, 80));
  strictEqual(conn.closed, true);
});

Deno.test("RawWebSocket reads a large message in reads sized by its header", async () => {
  const { conn, handler } = started();
  const big = "m".repeat(50_000);
  conn.feed(clientFrame(OP.text, big));
  await tick();
  await tick();
  deepStrictEqual(handler.events, ["open", `text:${big}`]);
});

Deno.test("RawWebSocket.sweep pings a quiet peer, keeps one that answers, and drops one that does not", async () => {
  const { conn, socket, handler } = started();
  await tick();
  const pings = () => conn.frames().filter(([op]) => op === (0x80 | OP.ping)).length;
  strictEqual(socket.sweep(2), true, "the start counts as heard");
  strictEqual(socket.sweep(2), true);
  strictEqual(pings(), 0);
  strictEqual(socket.sweep(2), true);
  await tick();
  strictEqual(pings(), 1, "pinged after two quiet sweeps");
  conn.feed(clientFrame(OP.pong, ""));
  await tick();
  strictEqual(socket.sweep(2), true, "the pong counts");
  strictEqual(socket.sweep(2), true);
  strictEqual(socket.sweep(2), true);
  await tick();
  strictEqual(pings(), 2);
  strictEqual(socket.sweep(2), false, "no answer: dropped");
  deepStrictEqual(handler.events, ["open", "closed:1006"]);
  strictEqual(conn.closed, true);
});

Deno.test("RawWebSocket lets go of its handler when it closes, and says so once", async () => {
  const conn = new FakeConn();
  const closedSockets: RawWebSocket[] = [];
  const socket = new RawWebSocket(conn, { onClosed: (s) => closedSockets.push(s) });
  const handler = new Recorder();
  socket.bind(handler);
  socket.start(PREAMBLE, new Uint8Array(0));
  conn.feed(clientFrame(OP.close, closePayload(1000)));
  conn.feed(null);
  await tick();
  deepStrictEqual(closedSockets, [socket]);
  strictEqual(socket.bound, false, "the session is no longer reachable from the socket");
  deepStrictEqual(handler.events, ["open", "closed:1000"]);
});
