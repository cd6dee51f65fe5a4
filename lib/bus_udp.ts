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
import type { MessageLoader } from "./bus.ts";
import { WireBus } from "./bus_wire.ts";
import { DATAGRAM_MAX_BYTES, EnvelopeCodec } from "./envelope.ts";
import type { Transport, TransportListener } from "./bus_wire.ts";

const logger = getLogger(["chat", "bus_udp"]);

/** Options of {@linkcode openUdpBus}. */
export interface UdpBusOptions {
  /** Cluster secret (HMAC key). */
  readonly secret: string;
  /** This node's id. */
  readonly nodeId: string;
  /** UDP port every node binds and sends to; 0 picks a free one (tests). */
  readonly port: number;
  /** Where datagrams go, e.g. `127.255.255.255` or `192.168.0.255`. */
  readonly broadcast: string;
  /** Address to bind. @default {"0.0.0.0"} */
  readonly hostname?: string;
  /** Loads messages that came by reference. */
  readonly loadMessage: MessageLoader;
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
  const transport = new UdpTransport(conn, { hostname: options.broadcast, port });
  logger.info("UDP bus on port {port}, broadcasting to {broadcast}", {
    port,
    broadcast: options.broadcast,
  });
  return new UdpBus({
    codec,
    transport,
    loadMessage: options.loadMessage,
    memberRepeatMs: options.memberRepeatMs ?? [200, 1000],
    ...(options.headIntervalMs === undefined ? {} : { headIntervalMs: options.headIntervalMs }),
    ...(options.now === undefined ? {} : { now: options.now }),
  }, port);
}

/** One UDP socket: sends to the broadcast address, reads until closed. */
class UdpTransport implements Transport {
  #conn: Deno.DatagramConn;
  #target: Deno.NetAddr;
  #closed = false;
  #loop: Promise<void> = Promise.resolve();

  constructor(conn: Deno.DatagramConn, target: { hostname: string; port: number }) {
    this.#conn = conn;
    this.#target = { transport: "udp", ...target };
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
        listener.packet(data);
      } catch (error) {
        if (this.#closed) return;
        logger.error("UDP receive failed: {error}", { error });
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async send(packet: Uint8Array): Promise<void> {
    if (this.#closed) return;
    await this.#conn.send(packet, this.#target);
  }

  ping(): Promise<void> {
    return this.#closed ? Promise.reject(new Error("UDP bus closed")) : Promise.resolve();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn.close();
    await this.#loop;
  }
}
