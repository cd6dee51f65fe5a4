/**
 * The LAN bus: signed envelopes as UDP broadcast datagrams of at most
 * 1,200 bytes (`Deno.listenDatagram`, needs `--unstable-net`). The socket
 * binds `CHAT_UDP_PORT` with address reuse (SO_REUSEADDR), so several nodes
 * on one host share the port and each gets every broadcast; Deno enables
 * SO_BROADCAST on UDP sockets, so nothing else is needed to send to a
 * broadcast address. Checked on Deno 2.9.6 / Linux: two sockets bound to
 * 0.0.0.0:p with `reuseAddress` both receive a datagram sent to
 * 127.255.255.255:p; without it the second bind fails with AddrInUse.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { MessageLoader, RecentHeadsLoader } from "./bus.ts";
import { WireBus } from "./bus_wire.ts";
import { DATAGRAM_MAX_BYTES, EnvelopeCodec } from "./envelope.ts";
import type { Transport, TransportListener } from "./bus_transport.ts";

const logger = getLogger(["chat", "bus_udp"]);

/** Options of {@linkcode openUdpBus}. */
export interface UdpBusOptions {
  /** Cluster secret (HMAC key). */
  readonly secret: string;
  /** This node's id. */
  readonly nodeId: string;
  /** UDP port every node binds and sends to; 0 picks a free one (tests). */
  readonly port: number;
  /** Where datagrams go, e.g. `127.255.255.255`, or the LAN's `x.y.z.255`. */
  readonly broadcast: string;
  /** Address to bind. @default {"0.0.0.0"} */
  readonly hostname?: string;
  /** Loads messages that came by reference. */
  readonly loadMessage: MessageLoader;
  /** Reads recent conversation heads when another node goes silent (see `WireBus`). */
  readonly loadRecentHeads?: RecentHeadsLoader;
  /** Largest datagram. @default {DATAGRAM_MAX_BYTES} */
  readonly maxBytes?: number;
  /** How often recent conversation heads are announced. @default {1000} */
  readonly headIntervalMs?: number;
  /** Resend delays of membership envelopes. @default {[200, 1000]} */
  readonly memberRepeatMs?: readonly number[];
  /** Clock in epoch ms. @default {Date.now} */
  readonly now?: () => number;
}

/** The UDP {@linkcode WireBus}, with the port it bound. */
export class UdpBus extends WireBus {
  /** The bound UDP port (useful when 0 was asked for). */
  readonly port: number;

  /** Use {@linkcode openUdpBus}. */
  constructor(options: ConstructorParameters<typeof WireBus>[0], port: number) {
    super(options);
    this.port = port;
  }
}

/**
 * Bind the socket and start the bus. Throws (e.g. `Deno.errors.AddrInUse`,
 * `NotCapable`) when the port cannot be bound, so the server stops at
 * start instead of running without a bus.
 */
export async function openUdpBus(options: UdpBusOptions): Promise<UdpBus> {
  const codec = await EnvelopeCodec.create({
    secret: options.secret,
    nodeId: options.nodeId,
    maxBytes: options.maxBytes ?? DATAGRAM_MAX_BYTES,
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: options.hostname ?? "0.0.0.0",
    port: options.port,
    reuseAddress: true,
  });
  const port = (conn.addr as Deno.NetAddr).port;
  const transport = new UdpTransport(conn, {
    target: { hostname: options.broadcast, port },
    now: options.now ?? Date.now,
  });
  logger.info("UDP bus on port {port}, broadcasting to {broadcast}", {
    port,
    broadcast: options.broadcast,
  });
  return new UdpBus({
    codec,
    transport,
    loadMessage: options.loadMessage,
    ...(options.loadRecentHeads === undefined ? {} : { loadRecentHeads: options.loadRecentHeads }),
    memberRepeatMs: options.memberRepeatMs ?? [200, 1000],
    ...(options.headIntervalMs === undefined ? {} : { headIntervalMs: options.headIntervalMs }),
    ...(options.now === undefined ? {} : { now: options.now }),
  }, port);
}

/**
 * How long a failed send or receive keeps the bus "not ready". The receive
 * loop retries every 100 ms, so a broken socket keeps failing well inside
 * this window; a one-off error (e.g. ENOBUFS) stops counting after it.
 */
export const UDP_FAILURE_WINDOW_MS = 5000;

/** A socket error and when it happened (epoch ms). */
interface Failure {
  readonly error: unknown;
  readonly at: number;
}

/** One UDP socket: sends to the broadcast address, reads until closed. */
class UdpTransport implements Transport {
  #conn: Deno.DatagramConn;
  #target: Deno.NetAddr;
  #now: () => number;
  #closed = false;
  #loop: Promise<void> = Promise.resolve();
  /** The last failed send / receive and when; each cleared by a later success of its kind. */
  #sendFailure: Failure | undefined;
  #receiveFailure: Failure | undefined;

  constructor(
    conn: Deno.DatagramConn,
    options: { target: { hostname: string; port: number }; now: () => number },
  ) {
    this.#conn = conn;
    this.#target = { transport: "udp", ...options.target };
    this.#now = options.now;
  }

  start(listener: TransportListener): void {
    this.#loop = this.#read(listener);
  }

  async #read(listener: TransportListener): Promise<void> {
    while (!this.#closed) {
      try {
        // No buffer argument: Deno reads up to 64 KiB, so an oversized
        // datagram arrives whole and is counted, never silently cut.
        const [data] = await this.#conn.receive();
        this.#receiveFailure = undefined;
        listener.packet(data);
      } catch (error) {
        if (this.#closed) return;
        this.#receiveFailure = { error, at: this.#now() };
        logger.error("UDP receive failed: {error}", { error });
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async send(packet: Uint8Array): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#conn.send(packet, this.#target);
    } catch (error) {
      this.#sendFailure = { error, at: this.#now() };
      throw error;
    }
    this.#sendFailure = undefined;
  }

  /** Rejects once closed, or while the last send or receive failed (within the window). */
  ping(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("UDP bus closed"));
    const failures = [["send", this.#sendFailure], ["receive", this.#receiveFailure]] as const;
    for (const [what, failure] of failures) {
      if (failure !== undefined && this.#now() - failure.at < UDP_FAILURE_WINDOW_MS) {
        const error = new Error(`UDP ${what} failed: ${failure.error}`, { cause: failure.error });
        return Promise.reject(error);
      }
    }
    return Promise.resolve();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn.close();
    await this.#loop;
  }
}
