/**
 * The seam under `WireBus` (`bus_wire.ts`): something that moves signed packets
 * to every node (UDP broadcast in `bus_udp.ts`, Redis pub/sub in
 * `bus_redis.ts`, an in-process hub in tests).
 *
 * @module
 */

/** What the transport tells the bus. */
export interface TransportListener {
  /** One packet arrived (from any node, this one included). */
  packet(bytes: Uint8Array): void;
  /**
   * The link came back after a break that began at `brokenAt` (epoch ms,
   * this node's clock): packets may have been lost meanwhile, both ways.
   */
  reconnected(brokenAt: number): void;
}

/**
 * Moves packets to every node. Contract: `send` rejects on failure and
 * never blocks for long; after `close()` nothing more reaches the listener.
 */
export interface Transport {
  /** Begin receiving. Called once. */
  start(listener: TransportListener): void;
  /** Send one packet to every node. */
  send(packet: Uint8Array): Promise<void>;
  /** Stop and release sockets or connections. Idempotent. */
  close(): Promise<void>;
  /**
   * Resolves when the transport can carry packets to other nodes; rejects
   * when it cannot (closed, socket failed, server not answering). Settles
   * within a few seconds.
   */
  ping(): Promise<void>;
}
