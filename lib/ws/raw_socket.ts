/**
 * A server-side websocket on a plain TCP connection, for the chat socket
 * (issue #7: memory per idle connection). An idle socket holds one pending
 * read into a 1 KiB buffer and this object (24 KiB per idle connection
 * with Deno's websocket, 8 - 15 with this one: bench/RESULTS.md round 6).
 * A write starts in a microtask, so the frames sent before it runs go out
 * together, and frames queued while a write is in flight go out together in
 * the next write.
 *
 * Close semantics follow the WHATWG socket the session was written for:
 * `closed(code)` is called once, with the peer's close code, 1005 for a
 * close without one, or 1006 when the connection ended without a close
 * frame (or the peer did not answer ours within `closeTimeoutMs`).
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import {
  encodeClose,
  encodeFrame,
  encodeText,
  FrameReader,
  OP,
  type TextFrames,
  WsProtocolError,
} from "./frames.ts";

/** What a raw socket reports to; the chat route's socket binding implements it. */
export interface WsHandler {
  /** The socket is open; frames may be sent. Called once, first. */
  opened(): void;
  /** One whole message from the peer. */
  message(data: string | Uint8Array): void;
  /** The socket closed (called once, last). */
  closed(code: number): void;
}

/** The slice of `Deno.Conn` a raw socket uses. */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** Options of {@linkcode RawWebSocket}. */
export interface RawWebSocketOptions {
  /** Largest message accepted; a bigger one closes the socket with 1009. @default {1 MiB} */
  readonly maxMessageBytes?: number;
  /** How long to wait for the peer's answer to our close frame. @default {5000} */
  readonly closeTimeoutMs?: number;
  /** Shared by the sockets of one front door, so a fan-out encodes once. @default {none} */
  readonly frames?: TextFrames;
  /** Called once a socket has closed, after its handler (the front door forgets it). */
  readonly onClosed?: (socket: RawWebSocket) => void;
}

const READ_BYTES = 1024;
const EMPTY = new Uint8Array(0);
/** Largest single read when a frame's header says it is big. */
const MAX_READ_BYTES = 64 * 1024;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** One websocket on `conn`, after the opening handshake. */
export class RawWebSocket {
  #conn: ByteConn;
  #reader: FrameReader;
  #closeTimeoutMs: number;
  #frames: TextFrames | undefined;
  #onClosed: ((socket: RawWebSocket) => void) | undefined;
  #handler: WsHandler | undefined;
  #state = CONNECTING;
  readonly #queue: Uint8Array[] = [];
  #buffered = 0;
  /** A write is in flight, or queued as a microtask (frames queued before it runs join it). */
  #writing = false;
  /** Close the TCP connection once the queue is written. */
  #endAfterWrite = false;
  #ended = false;
  /** After a protocol error: read on without parsing, so the peer can read our close. */
  #discarding = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Whether anything arrived since the last {@linkcode sweep}, and sweeps since it did. */
  #heard = true;
  #quietSweeps = 0;
  /** The 1 KiB buffer of ordinary reads, and the buffer of the read in flight. */
  #small: Uint8Array | undefined;
  #readBuf: Uint8Array = EMPTY;

  /** A socket on `conn`; nothing happens until {@linkcode start}. */
  constructor(conn: ByteConn, options: RawWebSocketOptions = {}) {
    this.#conn = conn;
    this.#reader = new FrameReader(options.maxMessageBytes ?? 1024 * 1024);
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 5000;
    this.#frames = options.frames;
    this.#onClosed = options.onClosed;
  }

  /** 0 connecting, 1 open, 2 closing, 3 closed, as `WebSocket.readyState`. */
  get readyState(): number {
    return this.#state;
  }

  /** Bytes queued and not yet written to the connection. */
  get bufferedAmount(): number {
    return this.#buffered;
  }

  /** Whether {@linkcode bind} gave the socket its handler. */
  get bound(): boolean {
    return this.#handler !== undefined;
  }

  /** Set the handler; before {@linkcode start}. */
  bind(handler: WsHandler): void {
    if (this.#state !== CONNECTING) throw new TypeError("Socket already started");
    this.#handler = handler;
  }

  /**
   * Write `preamble` (the 101 response), open, and read; `early` holds bytes
   * that came after the request head.
   */
  start(preamble: Uint8Array, early: Uint8Array): void {
    const handler = this.#handler;
    if (this.#state !== CONNECTING || handler === undefined) {
      throw new TypeError("Socket not bound, or already started");
    }
    this.#enqueue(preamble);
    this.#state = OPEN;
    handler.opened();
    if (early.length > 0) this.#feed(early);
    this.#read();
  }

  /** Queue one text frame; ignored unless open. */
  send(text: string): void {
    if (this.#state === OPEN) this.#enqueue(this.#frames?.encode(text) ?? encodeText(text));
  }

  /** Send a close frame and wait (bounded) for the peer's. Idempotent. */
  close(code: number, reason: string): void {
    if (this.#state !== OPEN) return;
    this.#state = CLOSING;
    this.#enqueue(encodeClose(code, reason));
    this.#timer = setTimeout(() => this.#end(1006), this.#closeTimeoutMs);
  }

  /**
   * Reaps dead peers without a timer per socket: the front door calls this
   * every sweep interval. After `pingAfter` sweeps with nothing read, ping
   * the peer; one more quiet sweep and the connection is dropped (1006).
   * Returns false once the socket is closed (stop sweeping it).
   */
  sweep(pingAfter: number): boolean {
    if (this.#state === CLOSED) return false;
    if (this.#heard) {
      this.#heard = false;
      this.#quietSweeps = 0;
      return true;
    }
    this.#quietSweeps++;
    if (this.#quietSweeps === pingAfter) this.#enqueue(encodeFrame(OP.ping, new Uint8Array(0)));
    else if (this.#quietSweeps > pingAfter) this.#end(1006);
    return this.#state !== CLOSED;
  }

  /**
   * Read once, then again from the callback until the connection is closed
   * (reads go on after a close is reported). Callbacks made once per socket
   * instead of an async loop: an idle socket waits in one pending read, and
   * a suspended async function (its generator, registers and await
   * closures) cost some 350 bytes more per idle connection (issue #7).
   */
  #read(): void {
    const wanted = this.#reader.wanted;
    this.#readBuf = wanted > READ_BYTES
      ? new Uint8Array(Math.min(wanted, MAX_READ_BYTES))
      : (this.#small ??= new Uint8Array(READ_BYTES));
    this.#conn.read(this.#readBuf).then(this.#onRead, this.#onReadFailed);
  }

  #onRead = (n: number | null): void => {
    if (n === null) {
      this.#end(1006);
      return;
    }
    this.#heard = true;
    this.#feed(this.#readBuf.subarray(0, n));
    if (!this.#ended) this.#read();
  };

  #onReadFailed = (): void => this.#end(1006);

  #feed(bytes: Uint8Array): void {
    if (this.#discarding) return;
    let messages;
    try {
      messages = this.#reader.push(bytes);
    } catch (error) {
      if (!(error instanceof WsProtocolError)) throw error;
      // Tell the peer why. What it still sends is dropped unread until it
      // answers or the close timeout ends the connection: hanging up on
      // unread bytes would reset the connection before the close is read.
      if (this.#state === OPEN) this.#enqueue(encodeClose(error.code, error.message));
      this.#discarding = true;
      this.#finish(error.code, "linger");
      return;
    }
    for (const m of messages) {
      if (this.#state === CLOSED) return;
      switch (m.kind) {
        case "text":
          if (this.#state === OPEN) this.#handler?.message(m.text);
          break;
        case "binary":
          if (this.#state === OPEN) this.#handler?.message(m.data);
          break;
        case "ping":
          // Nothing follows our close frame.
          if (this.#state === OPEN) this.#enqueue(encodeFrame(OP.pong, m.data));
          break;
        case "pong":
          break;
        case "close":
          if (this.#state === OPEN) {
            // Echo the code (none for 1005), as the closing handshake asks.
            this.#enqueue(
              m.code === 1005 ? encodeFrame(OP.close, new Uint8Array(0)) : encodeClose(m.code, ""),
            );
          }
          this.#finish(m.code, "flush");
          return;
      }
    }
  }

  #enqueue(frame: Uint8Array): void {
    this.#queue.push(frame);
    this.#buffered += frame.length;
    if (!this.#writing) {
      // In a microtask, not at once: a store batch resumes its callers in microtasks queued
      // together, so the acks and deliveries it brings a socket go out in one write (one
      // syscall and op instead of two or more; 10 - 13 % less main thread at 8,000 1:1/s).
      this.#writing = true;
      queueMicrotask(() => void this.#write());
    }
  }

  /** Runs with `#writing` already set by {@linkcode #enqueue}. */
  async #write(): Promise<void> {
    try {
      const queue = this.#queue;
      while (queue.length > 0) {
        const batch = queue.length === 1 ? queue[0]! : concatBytes(queue);
        queue.length = 0;
        // Straight to the connection: a write of a small batch is whole.
        let at = await this.#conn.write(batch);
        while (at < batch.length) at += await this.#conn.write(batch.subarray(at));
        this.#buffered -= batch.length;
      }
    } catch {
      this.#end(1006);
      return;
    } finally {
      this.#writing = false;
    }
    if (this.#endAfterWrite) this.#closeConn();
  }

  /**
   * Report `code` once, then end the connection: `now`; after the queue is
   * written (`flush`); or after the peer hangs up (`linger`: what it sends
   * meanwhile is read and dropped). Waiting is bounded by the close timeout.
   */
  #finish(code: number, then: "now" | "flush" | "linger"): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    if (then === "now" || (then === "flush" && !this.#writing && this.#queue.length === 0)) {
      this.#closeConn();
    } else {
      if (then === "flush") this.#endAfterWrite = true;
      // A peer that does not read, or does not hang up, must not keep the connection.
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => this.#closeConn(), this.#closeTimeoutMs);
    }
    const handler = this.#handler;
    // Nothing of the session stays reachable from a closed socket.
    this.#handler = undefined;
    handler?.closed(code);
    this.#onClosed?.(this);
  }

  /** The connection ended or failed: report `code` if not yet, and close it now. */
  #end(code: number): void {
    this.#finish(code, "now");
    this.#closeConn();
  }

  #closeConn(): void {
    clearTimeout(this.#timer);
    if (this.#ended) return;
    this.#ended = true;
    this.#queue.length = 0;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the other side.
    }
  }
}
