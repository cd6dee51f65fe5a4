/**
 * The listening socket. A connection whose first request opens the chat
 * websocket (`GET /chat`, `Upgrade: websocket`) is handled here, on a
 * {@linkcode RawWebSocket}; every other connection goes byte for byte to the
 * internal HTTP server (`Deno.serve` on 127.0.0.1), which answers as before,
 * upgrades included. The upgrade request still runs through the same fetch
 * handler (drain gate, origin, token, limits): the handler's info carries an
 * `upgradeWebSocket` the chat route uses instead of Deno's.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { TextFrames } from "./frames.ts";
import { writeAll } from "../bytes.ts";
import { closeQuietly, type PeerAddresses, proxyTo } from "./proxy.ts";
import { RawWebSocket, type RawWebSocketOptions } from "./raw_socket.ts";
import {
  acceptKey,
  headEnd,
  header,
  isChatUpgrade,
  parseRequestHead,
  type RequestHead,
  websocketKey,
} from "./request_head.ts";

const logger = getLogger(["chat", "http"]);

/** What the chat route gets instead of `Deno.upgradeWebSocket`. */
export type RawUpgrade = (request: Request) => { socket: RawWebSocket; response: Response };

/** The second argument of the fetch handler for a request the front door answers. */
export interface FrontDoorInfo {
  readonly remoteAddr: Deno.Addr;
  readonly completed: Promise<void>;
  readonly upgradeWebSocket: RawUpgrade;
}

/** Options of {@linkcode FrontDoor}. */
export interface FrontDoorOptions {
  /** The listening socket (`Deno.listen`). */
  readonly listener: Deno.TcpListener;
  /** The internal HTTP server everything else goes to. */
  readonly upstream: Deno.NetAddr;
  /** Client addresses of the upstream connections, for the internal server's handler. */
  readonly peers: PeerAddresses;
  /** The handler upgrade requests go through (the same one the internal server runs). */
  readonly fetch: (request: Request, info: FrontDoorInfo) => Response | Promise<Response>;
  /** A request head must arrive within this. @default {10000} */
  readonly headTimeoutMs?: number;
  /**
   * How often open sockets are checked for silent peers: a socket quiet for
   * two sweeps is pinged, and dropped after a third. @default {40000}
   */
  readonly sweepMs?: number;
  readonly socket?: RawWebSocketOptions;
}

/** Longest request head the front door reads before handing the connection on. */
const HEAD_BYTES = 16 * 1024;
const PREFIX = new TextEncoder().encode("GET /chat");
const ENCODER = new TextEncoder();

/** Accepts connections until `close()`; see the module doc. */
export class FrontDoor {
  #options: FrontDoorOptions;
  #headTimeoutMs: number;
  #closed = false;
  #accepting: Promise<void>;
  #sockets = new Set<RawWebSocket>();
  #socketOptions: RawWebSocketOptions;
  #sweeper: ReturnType<typeof setInterval>;

  /** Start accepting on `options.listener`. */
  constructor(options: FrontDoorOptions) {
    this.#options = options;
    this.#headTimeoutMs = options.headTimeoutMs ?? 10_000;
    this.#socketOptions = {
      frames: new TextFrames(),
      onClosed: (socket) => this.#sockets.delete(socket),
      ...options.socket,
    };
    this.#accepting = this.#accept();
    this.#sweeper = setInterval(() => {
      for (const socket of this.#sockets) if (!socket.sweep(2)) this.#sockets.delete(socket);
    }, options.sweepMs ?? 40_000);
  }

  /** Stop accepting (open connections go on until they end). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    try {
      this.#options.listener.close();
    } catch {
      // Already closed.
    }
    await this.#accepting;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#options.listener.accept();
      } catch (error) {
        if (this.#closed) return;
        // Out of file descriptors and the like: wait a little, keep serving.
        logger.warn("Accept failed: {error}", { error });
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      void this.#handle(conn).catch((error) => {
        logger.error("Connection failed: {error}", { error });
        closeQuietly(conn);
      });
    }
  }

  async #handle(conn: Deno.TcpConn): Promise<void> {
    // Most heads fit in 2 KiB; a bigger one grows the buffer (issue #7: every
    // byte here is garbage per connect until the next GC).
    let buf = new Uint8Array(2048);
    let length = 0;
    let end = -1;
    const timer = setTimeout(() => closeQuietly(conn), this.#headTimeoutMs);
    try {
      while (end < 0 && length < HEAD_BYTES) {
        if (length === buf.length) {
          const bigger = new Uint8Array(HEAD_BYTES);
          bigger.set(buf);
          buf = bigger;
        }
        const n = await conn.read(buf.subarray(length));
        if (n === null) {
          closeQuietly(conn);
          return;
        }
        const from = length;
        length += n;
        if (!startsLike(buf, length)) break;
        end = headEnd(buf, length, from);
      }
    } catch {
      closeQuietly(conn); // timed out or reset
      return;
    } finally {
      clearTimeout(timer);
    }
    const head = end < 0 ? undefined : parseRequestHead(buf.subarray(0, end));
    if (head === undefined || !isChatUpgrade(head)) {
      return await this.#proxy(conn, buf.subarray(0, length));
    }
    await this.#upgrade(conn, head, buf.subarray(0, length), end);
  }

  #proxy(conn: Deno.TcpConn, read: Uint8Array): Promise<void> {
    const { upstream, peers } = this.#options;
    return proxyTo(conn, read, upstream, peers);
  }

  async #upgrade(
    conn: Deno.TcpConn,
    head: RequestHead,
    read: Uint8Array,
    end: number,
  ): Promise<void> {
    const local = conn.localAddr as Deno.NetAddr;
    let request: Request;
    try {
      const host = header(head, "host") ?? `${local.hostname}:${local.port}`;
      request = new Request(`http://${host}${head.target}`, {
        headers: head.headers.map(([n, v]) => [n, v]),
      });
    } catch {
      // Not a request we can build (an odd Host): the HTTP server answers it.
      return await this.#proxy(conn, read);
    }
    // Set by the route's upgrade call (a closure, hence an object).
    const upgraded: { socket?: RawWebSocket; accept?: string } = {};
    const info: FrontDoorInfo = {
      remoteAddr: conn.remoteAddr,
      completed: Promise.resolve(),
      upgradeWebSocket: (req) => {
        const key = websocketKey(req.headers);
        if (key === undefined) throw new TypeError("Invalid websocket handshake");
        if (upgraded.socket !== undefined) throw new TypeError("Already upgraded");
        // Small frames must go out at once, not wait for Nagle's algorithm (up to 40 ms).
        conn.setNoDelay(true);
        upgraded.socket = new RawWebSocket(conn, this.#socketOptions);
        upgraded.accept = acceptKey(key);
        // A Response cannot carry 101; the front door writes the real one.
        const response = new Response(null, { status: 200, headers: { upgrade: "websocket" } });
        return { socket: upgraded.socket, response };
      },
    };
    let response: Response;
    try {
      response = await this.#options.fetch(request, info);
    } catch (error) {
      logger.error("Upgrade handler failed: {error}", { error });
      response = new Response(null, { status: 500 });
    }
    const { socket, accept } = upgraded;
    if (socket !== undefined && socket.bound) {
      const preamble = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
        `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`;
      this.#sockets.add(socket);
      socket.start(ENCODER.encode(preamble), read.slice(end));
      return;
    }
    if (socket !== undefined) response = new Response(null, { status: 500 });
    await writeResponse(conn, response);
  }
}

/** Whether the first `length` bytes could still be `GET /chat…`. */
function startsLike(buf: Uint8Array, length: number): boolean {
  for (let i = 0; i < Math.min(length, PREFIX.length); i++) if (buf[i] !== PREFIX[i]) return false;
  return true;
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  426: "Upgrade Required",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** Send `response` as HTTP/1.1 with `Connection: close`, then close. */
async function writeResponse(conn: Deno.Conn, response: Response): Promise<void> {
  try {
    const body = new Uint8Array(await response.arrayBuffer());
    let head = `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? "Refused"}\r\n`;
    for (const [name, value] of response.headers) {
      if (name !== "connection" && name !== "content-length") head += `${name}: ${value}\r\n`;
    }
    head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
    await writeAll(conn, ENCODER.encode(head));
    await writeAll(conn, body);
  } catch {
    // The client left first.
  } finally {
    closeQuietly(conn);
  }
}
