/**
 * A {@linkcode Bus} over a packet transport (UDP broadcast, Redis pub/sub):
 * signs every envelope with the cluster secret, delivers this node's own
 * envelopes to its handlers at once (never waiting for an echo), drops its
 * echo by node id, refuses and counts bad packets, loads messages sent by
 * reference from the store, and announces conversation heads so a lost
 * tail is repaired (see `bus_heads.ts`). A node with nothing to say sends a
 * keepalive each head interval; when another node goes silent, the bus
 * reads the recent conversation heads from the store and hands them to its
 * handlers, since what that node published last may be lost with it
 * (`bus_peers.ts`).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  type Bus,
  type BusEnvelope,
  BusHandlers,
  type BusStats,
  type MessageLoader,
  type RecentHeadsLoader,
} from "./bus.ts";
import { HeadTracker, type HeadTrackerOptions } from "./bus_heads.ts";
import { PeerWatch, repairAfterLoss } from "./bus_peers.ts";
import type { Transport } from "./bus_transport.ts";
import { type EnvelopeCodec, EnvelopeError, type WirePayload } from "./envelope.ts";

const logger = getLogger(["chat", "bus"]);
/** A repeated cluster misconfiguration (clock skew, a shared node id) is logged once a minute. */
const WARN_EVERY_MS = 60_000;

/** What the bus needs of an {@linkcode EnvelopeCodec}. */
export type PacketCodec = Pick<EnvelopeCodec, "nodeId" | "seal" | "open">;

/** Options of {@linkcode WireBus}. */
export interface WireBusOptions {
  readonly codec: PacketCodec;
  readonly transport: Transport;
  /** Loads messages that came by reference. */
  readonly loadMessage: MessageLoader;
  /**
   * Reads recent conversation heads from the store when another node goes
   * silent. Without it a lost node is only logged.
   */
  readonly loadRecentHeads?: RecentHeadsLoader;
  /** Silence after which another node counts as lost. @default {3 head intervals} */
  readonly peerTimeoutMs?: number;
  /** How far back `loadRecentHeads` looks when a node is lost. @default {60000} */
  readonly repairWindowMs?: number;
  /** How often recent conversation heads are announced. @default {1000} */
  readonly headIntervalMs?: number;
  /** Head tracking tunables. */
  readonly heads?: HeadTrackerOptions;
  /** Membership envelopes are sent again after each of these delays (lossy links). @default {[]} */
  readonly memberRepeatMs?: readonly number[];
  /** Clock in epoch ms. @default {Date.now} */
  readonly now?: () => number;
  /**
   * Packets waiting to be handled at most; more are dropped and counted
   * (receivers repair from the store), so a burst cannot grow memory
   * without bound. @default {10000}
   */
  readonly maxInbound?: number;
}

type Counts = { -readonly [K in keyof BusStats]: number };

/** The signed-packet bus; see the module doc. */
export class WireBus implements Bus {
  #codec: PacketCodec;
  #transport: Transport;
  #loadMessage: MessageLoader;
  #handlers = new BusHandlers();
  #heads: HeadTracker;
  #peers: PeerWatch;
  /** When each misconfiguration warning was last logged. */
  #warned = new Map<string, number>();
  #loadRecentHeads: RecentHeadsLoader | undefined;
  #repairWindowMs: number;
  #sentSinceTick = false;
  #memberRepeatMs: readonly number[];
  #now: () => number;
  #closed = false;
  #interval: ReturnType<typeof setInterval>;
  #repeats = new Set<ReturnType<typeof setTimeout>>();
  #nextTick = Promise.withResolvers<void>();
  #secondTick = Promise.withResolvers<void>();
  #inbound: Promise<void> = Promise.resolve();
  /** Settles once the last packet sealed so far went to the transport (or was dropped). */
  #handedOff: Promise<void> = Promise.resolve();
  #queued = 0;
  #maxInbound: number;
  #counts: Counts = {
    sent: 0,
    received: 0,
    dropped: 0,
    badSignature: 0,
    replayed: 0,
    malformed: 0,
    oversized: 0,
  };

  /** Start receiving from `options.transport` and announcing heads. */
  constructor(options: WireBusOptions) {
    this.#codec = options.codec;
    this.#transport = options.transport;
    this.#loadMessage = options.loadMessage;
    this.#heads = new HeadTracker(options.heads);
    const intervalMs = options.headIntervalMs ?? 1000;
    this.#peers = new PeerWatch(options.peerTimeoutMs ?? 3 * intervalMs);
    this.#loadRecentHeads = options.loadRecentHeads;
    this.#repairWindowMs = options.repairWindowMs ?? 60_000;
    this.#memberRepeatMs = options.memberRepeatMs ?? [];
    this.#now = options.now ?? Date.now;
    this.#maxInbound = options.maxInbound ?? 10_000;
    this.#interval = setInterval(() => {
      // Bounds publish()'s wait without a timer per packet: it races the
      // second tick from now, so it lasts one to two intervals at most.
      this.#nextTick.resolve();
      this.#nextTick = this.#secondTick;
      this.#secondTick = Promise.withResolvers();
      this.#tick();
    }, intervalMs);
    this.#transport.start({
      packet: (bytes) => {
        if (this.#closed) return;
        if (this.#queued >= this.#maxInbound) {
          if (this.#counts.dropped++ % 1000 === 0) {
            logger.warn("Bus inbound queue full ({max}); dropping packets", {
              max: this.#maxInbound,
            });
          }
          return;
        }
        this.#queued++;
        // One packet at a time, in arrival order; a failure never stops the chain.
        this.#inbound = this.#inbound.then(async () => {
          try {
            await this.#receive(bytes);
          } catch (error) {
            logger.error("Bus packet handling failed: {error}", { error });
          } finally {
            this.#queued--;
          }
        });
      },
      reconnected: (brokenAt) => {
        // Ours to tell again, and theirs to read from the store: the other
        // nodes' announcements while we were away reached no one here, and
        // ours now may reach them before they are back.
        this.#announce(true);
        this.#repair([this.#codec.nodeId], "reconnected to the bus", brokenAt);
      },
    });
  }

  /** This node's id (as carried in its envelopes). */
  get nodeId(): string {
    return this.#codec.nodeId;
  }

  /**
   * Deliver to this node's handlers now, then send to the other nodes; the
   * promise settles when the packet is with the transport (or dropped), or
   * after one to two head intervals if the transport hangs.
   */
  publish(envelope: BusEnvelope): Promise<void> | undefined {
    if (this.#closed) return;
    this.#handlers.emit(envelope);
    if (envelope.kind === "message") {
      this.#heads.note(envelope.message.conv, envelope.message.seq, this.#now());
    } else if (envelope.kind === "heads") {
      // A retry's announcement (chat_service.ts): said again each tick for a
      // while, like a message's, in case this packet is lost.
      for (const { conv, seq } of envelope.heads) this.#heads.note(conv, seq, this.#now());
    }
    const sent = Promise.race([this.#send(envelope), this.#secondTick.promise]);
    if (envelope.kind === "member") {
      for (const ms of this.#memberRepeatMs) {
        const id = setTimeout(() => {
          this.#repeats.delete(id);
          void this.#send(envelope);
        }, ms);
        this.#repeats.add(id);
      }
    }
    return sent;
  }

  /** Add a handler; the returned function removes it. */
  subscribe(handler: (envelope: BusEnvelope) => void): () => void {
    return this.#handlers.add(handler);
  }

  /** Resolves when the transport can carry packets; rejects once closed or when it cannot. */
  ping(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("Bus closed"));
    return this.#transport.ping();
  }

  /** Stop timers, the transport and the handlers. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#interval);
    this.#nextTick.resolve();
    this.#secondTick.resolve();
    for (const id of this.#repeats) clearTimeout(id);
    this.#repeats.clear();
    this.#handlers.clear();
    await this.#transport.close();
    await this.#inbound;
  }

  /** The counters so far (a copy). */
  stats(): BusStats {
    return { ...this.#counts };
  }

  #tick(): void {
    this.#announce(false);
    // Silence must mean "gone": say something every interval.
    if (!this.#sentSinceTick) void this.#send({ kind: "heads", heads: [] });
    this.#sentSinceTick = false;
    const now = this.#now();
    const lost = this.#peers.lost(now);
    if (lost.length > 0) this.#repair(lost, "went silent", now);
    // A partition healed: what they published meanwhile reached no one here,
    // and their heads may have stopped being announced long ago.
    const back = this.#peers.returned();
    if (back.length > 0) {
      const since = Math.min(...back.map((b) => b.silentSince));
      this.#repair(back.map((b) => b.nodeId), "came back", since);
    }
  }

  /** Hand this node's sessions the store's heads of conversations written since `from` (minus the window). */
  #repair(nodes: readonly string[], event: string, from: number): void {
    void repairAfterLoss(nodes, {
      event,
      load: this.#loadRecentHeads,
      sinceTs: from - this.#repairWindowMs,
      emit: (heads) => {
        if (!this.#closed) this.#handlers.emit({ kind: "heads", heads, repair: true });
      },
    });
  }

  #announce(all: boolean): void {
    if (this.#closed) return;
    for (const heads of this.#heads.due(this.#now(), all)) {
      void this.#send({ kind: "heads", heads });
    }
  }

  async #send(envelope: WirePayload): Promise<void> {
    this.#sentSinceTick = true;
    // Seals run on a thread pool and finish out of order under load; packets
    // still go to the transport in publish order, or receivers would see
    // seq gaps and read the store to fill them.
    const sealing = this.#codec.seal(envelope);
    const previous = this.#handedOff;
    const turn = Promise.withResolvers<void>();
    this.#handedOff = turn.promise;
    let sending: Promise<void>;
    try {
      const packet = await sealing;
      await previous;
      if (this.#closed) return;
      sending = this.#transport.send(packet);
    } catch (error) {
      if (error instanceof EnvelopeError) this.#counts.oversized++;
      else this.#counts.dropped++;
      logger.error("Envelope not sent: {error}", { error });
      await previous;
      return;
    } finally {
      turn.resolve();
    }
    try {
      await sending;
      this.#counts.sent++;
    } catch (error) {
      this.#counts.dropped++;
      logger.warn("Bus send failed; receivers repair from the store: {error}", { error });
    }
  }

  async #receive(bytes: Uint8Array): Promise<void> {
    let opened;
    try {
      opened = await this.#codec.open(bytes);
    } catch (error) {
      if (!(error instanceof EnvelopeError)) throw error;
      this.#refused(error);
      return;
    }
    if (opened.self) {
      if (opened.twin) {
        this.#warnOnce(`twin`, () =>
          logger.error(
            "Another node runs with this node's id {nodeId} (CHAT_NODE_ID): each drops the other's packets; give every node its own id",
            { nodeId: this.#codec.nodeId },
          ));
      }
      return;
    }
    if (this.#closed) return;
    const { payload, nodeId } = opened;
    this.#peers.heard(nodeId, opened.epoch, this.#now());
    if (payload.kind !== "message_ref") {
      this.#counts.received++;
      this.#handlers.emit(payload);
      return;
    }
    let message;
    try {
      message = await this.#loadMessage(payload.ref);
    } catch (error) {
      logger.warn("Cannot load message {ref} from the store: {error}", { ref: payload.ref, error });
    }
    if (message === undefined) {
      this.#counts.dropped++;
      logger.warn("Message {ref} from node {nodeId} is not in the store", {
        ref: payload.ref,
        nodeId,
      });
      return;
    }
    if (this.#closed) return;
    this.#counts.received++;
    this.#handlers.emit({
      kind: "message",
      message,
      ...(payload.exceptSession === undefined ? {} : { exceptSession: payload.exceptSession }),
    });
  }

  #refused(error: EnvelopeError): void {
    switch (error.reason) {
      case "oversized":
        this.#counts.oversized++;
        break;
      case "unsigned":
      case "bad_signature":
        this.#counts.badSignature++;
        break;
      case "malformed":
        this.#counts.malformed++;
        break;
      case "replayed":
        this.#counts.replayed++;
        break;
    }
    const clock = error.clock;
    if (clock !== undefined) {
      // Every packet of that node is refused: it is cut off from this one, silently otherwise.
      this.#warnOnce(`clock:${clock.nodeId}`, () =>
        logger.warn(
          "Node {nodeId}'s clock is {skewSeconds} s off this node's (or its old packets are replayed); its bus packets are refused until the clocks agree (NTP)",
          { nodeId: clock.nodeId, skewSeconds: Math.round(clock.skewMs / 1000) },
        ));
    }
    logger.debug("Dropped a bus packet ({reason}): {error}", {
      reason: error.reason,
      error: error.message,
    });
  }

  /** Run `warn` at most once a minute per `key`; the keys are bounded like the peers. */
  #warnOnce(key: string, warn: () => void): void {
    const now = this.#now();
    const last = this.#warned.get(key);
    if (last !== undefined && now - last < WARN_EVERY_MS) return;
    this.#warned.delete(key);
    this.#warned.set(key, now);
    if (this.#warned.size > 1024) {
      const oldest = this.#warned.keys().next().value;
      if (oldest !== undefined) this.#warned.delete(oldest);
    }
    warn();
  }
}
