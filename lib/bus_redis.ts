/**
 * The bus for clusters that outgrow one LAN: the same signed envelopes as
 * the UDP bus, carried by Redis pub/sub (`CHAT_BUS=redis://host:port`)
 * through the official `redis` npm client. The client reconnects by itself
 * after a Redis restart and subscribes again; envelopes published while
 * Redis is down are dropped and counted (no offline queue), and once the
 * link is back this node announces its recent conversation heads, so
 * sessions elsewhere pull what they missed from the store.
 *
 * Needs `--allow-net=<redis host:port>` and
 * `--allow-env=REDIS_DEBUG_MAINTENANCE,REDIS_EMIT_DIAGNOSTICS` (the client
 * reads these two).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Buffer } from "node:buffer";
import { createClient } from "redis";
import type { MessageLoader, RecentHeadsLoader } from "./bus.ts";
import type { Transport, TransportListener } from "./bus_transport.ts";
import { WireBus } from "./bus_wire.ts";
import { EnvelopeCodec } from "./envelope.ts";

const logger = getLogger(["chat", "bus_redis"]);

/** Largest envelope on Redis; bigger messages still go by reference. */
export const REDIS_MAX_BYTES = 256 * 1024;

/** Options of {@linkcode openRedisBus}. */
export interface RedisBusOptions {
  /** `redis://host:port[/db]`. */
  readonly url: string;
  /** Cluster secret (HMAC key). */
  readonly secret: string;
  /** This node's id. */
  readonly nodeId: string;
  /** Loads messages that came by reference. */
  readonly loadMessage: MessageLoader;
  /** Reads recent conversation heads when another node goes silent (see `WireBus`). */
  readonly loadRecentHeads?: RecentHeadsLoader;
  /** Pub/sub channel. @default {"lanchat:bus"} */
  readonly channel?: string;
  /** How long the first connection may take. @default {5000} */
  readonly connectTimeoutMs?: number;
  /** How long `ping()` waits for Redis's PONG. @default {1000} */
  readonly pingTimeoutMs?: number;
  /** How often recent conversation heads are announced. @default {1000} */
  readonly headIntervalMs?: number;
  /** Clock in epoch ms. @default {Date.now} */
  readonly now?: () => number;
}

type Client = ReturnType<typeof createClient>;

/**
 * Connect (publisher and subscriber) and start the bus. Throws when Redis
 * does not answer within `connectTimeoutMs`.
 */
export async function openRedisBus(options: RedisBusOptions): Promise<WireBus> {
  const codec = await EnvelopeCodec.create({
    secret: options.secret,
    nodeId: options.nodeId,
    maxBytes: REDIS_MAX_BYTES,
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  const transport = new RedisTransport(options.url, {
    channel: options.channel ?? "lanchat:bus",
    pingTimeoutMs: options.pingTimeoutMs ?? 1000,
  });
  await transport.connect(options.connectTimeoutMs ?? 5000);
  return new WireBus({
    codec,
    transport,
    loadMessage: options.loadMessage,
    ...(options.loadRecentHeads === undefined ? {} : { loadRecentHeads: options.loadRecentHeads }),
    ...(options.headIntervalMs === undefined ? {} : { headIntervalMs: options.headIntervalMs }),
    ...(options.now === undefined ? {} : { now: options.now }),
  });
}

/** A publishing and a subscribed connection to one Redis. */
class RedisTransport implements Transport {
  #pub: Client;
  #sub: Client;
  #channel: string;
  #listener: TransportListener | undefined;
  #closed = false;
  #where: string;
  #pingTimeoutMs: number;

  constructor(url: string, options: { channel: string; pingTimeoutMs: number }) {
    this.#channel = options.channel;
    this.#pingTimeoutMs = options.pingTimeoutMs;
    const u = new URL(url);
    this.#where = `${u.hostname}:${u.port === "" ? "6379" : u.port}`;
    this.#pub = createClient({
      url,
      disableOfflineQueue: true,
      socket: { reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2000) },
    });
    this.#sub = this.#pub.duplicate();
    this.#watch(this.#pub, "publisher");
    this.#watch(this.#sub, "subscriber");
  }

  #watch(client: Client, role: string): void {
    let up = false;
    let everUp = false;
    let brokenAt = Date.now();
    client.on("error", (error: unknown) => {
      if (!up) return;
      up = false;
      brokenAt = Date.now();
      logger.warn("Redis {role} connection to {where} lost: {error}", {
        role,
        where: this.#where,
        error,
      });
    });
    client.on("ready", () => {
      up = true;
      if (!everUp) {
        everUp = true;
        return;
      }
      logger.info("Redis {role} connection to {where} is back", { role, where: this.#where });
      this.#listener?.reconnected(brokenAt);
    });
  }

  async connect(timeoutMs: number): Promise<void> {
    const deadline = this.#deadline(timeoutMs);
    try {
      await Promise.race([
        Promise.all([this.#pub.connect(), this.#sub.connect()]),
        deadline.timeout,
      ]);
      await Promise.race([
        this.#sub.subscribe(this.#channel, (message: Uint8Array) => {
          if (!this.#closed) this.#listener?.packet(new Uint8Array(message));
        }, true),
        deadline.timeout,
      ]);
    } catch (error) {
      await this.close();
      throw error;
    } finally {
      deadline.clear();
    }
  }

  /** A promise that rejects after `ms` naming this Redis, and how to cancel it. */
  #deadline(ms: number): { timeout: Promise<never>; clear: () => void } {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Redis at ${this.#where} did not answer in ${ms} ms`)),
        ms,
      );
    });
    return { timeout, clear: () => clearTimeout(timer) };
  }

  start(listener: TransportListener): void {
    this.#listener = listener;
  }

  async send(packet: Uint8Array): Promise<void> {
    if (this.#closed) return;
    // The client takes strings or Buffers; a Buffer view shares the bytes.
    await this.#pub.publish(
      this.#channel,
      Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength),
    );
  }

  /**
   * A real PING on the publishing connection (the offline queue is off, so
   * it fails at once while disconnected), and the subscriber must be
   * connected too; rejects after `pingTimeoutMs` if Redis hangs.
   */
  async ping(): Promise<void> {
    if (this.#closed) throw new Error("Redis bus closed");
    if (!this.#sub.isReady) throw new Error(`Redis subscriber to ${this.#where} is not connected`);
    const deadline = this.#deadline(this.#pingTimeoutMs);
    try {
      await Promise.race([this.#pub.ping(), deadline.timeout]);
    } finally {
      deadline.clear();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener = undefined;
    for (const client of [this.#sub, this.#pub]) {
      try {
        client.destroy();
      } catch { /* not open */ }
    }
    await Promise.resolve();
  }
}
