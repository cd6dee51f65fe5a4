/**
 * The fan-out seam between nodes. The chat service publishes every stored
 * message and every membership change here; each node's subscriber hands
 * them to its dispatcher.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { MessageStore, StoredMessage } from "./store.ts";

const logger = getLogger(["chat", "bus"]);

/** Where a stored message is: enough to load it again from the store. */
export interface MessageRef {
  readonly id: number;
  readonly conv: string;
  readonly seq: number;
}

/** The newest seq of one conversation, as its sending node knows it. */
export interface ConvHead {
  readonly conv: string;
  readonly seq: number;
}

/** What travels on the bus. */
export type BusEnvelope =
  | {
    /** A stored message to deliver to the local sessions that should see it. */
    readonly kind: "message";
    readonly message: StoredMessage;
    /** The sending session, which already has its ack and must not get an echo. */
    readonly exceptSession?: string;
  }
  | {
    /** `userId` joined (or created) group `groupId`. */
    readonly kind: "member";
    readonly groupId: number;
    readonly userId: number;
    /**
     * The group's newest seq before the join was stored: the member's
     * sessions follow the group from the next one, also where a message
     * sent after the join arrived before this envelope. Absent from nodes
     * of older versions (the sessions then follow from the newest seq when
     * the envelope arrives).
     */
    readonly seq?: number;
  }
  | {
    /**
     * Conversations recently written through the sending node, with their
     * newest seq, announced every second for a while after each message,
     * so sessions elsewhere can pull a lost tail from the store.
     */
    readonly kind: "heads";
    readonly heads: readonly ConvHead[];
    /**
     * Read from the store after a loss (never sent): the group joins of the
     * same time may be lost too, so the receiver checks its groups' members.
     */
    readonly repair?: boolean;
  };

/** What a bus counts; every field only goes up. */
export interface BusStats {
  /** Envelopes (datagrams, Redis messages) sent to other nodes. */
  readonly sent: number;
  /** Envelopes from other nodes accepted and handed to subscribers. */
  readonly received: number;
  /** Envelopes not sent or not delivered for a transport or store failure or a full inbound queue. */
  readonly dropped: number;
  /** Packets refused for a missing or wrong HMAC signature. */
  readonly badSignature: number;
  /** Packets refused as replays (counter seen, or too old). */
  readonly replayed: number;
  /** Packets refused as malformed. */
  readonly malformed: number;
  /** Packets refused, or envelopes not sent, for being too large. */
  readonly oversized: number;
}

/**
 * A publish/subscribe channel to every node of the cluster, this one included.
 *
 * Contract: delivery is **at-most-once, may drop, may reorder**. Nothing
 * downstream relies on the bus for completeness: messages are persisted
 * before they are published, and clients repair loss with catch-up.
 * `publish` must not block or throw on transport trouble (it logs and drops);
 * handlers are called for envelopes from every node including this one;
 * after `close()` no handler is called and `publish` is a no-op.
 * `ping()` is the readiness probe (`/readyz`): it resolves when the bus can
 * carry envelopes to other nodes right now and rejects when it cannot
 * (closed, the socket failed, the Redis server does not answer); it settles
 * within a few seconds and never throws synchronously.
 */
export interface Bus {
  /**
   * Send `envelope` to every node. This node's handlers run before it
   * returns. When the envelope leaves the process asynchronously, the
   * returned promise settles (it never rejects) once the envelope is handed
   * to the transport, dropped, or a bounded wait is over: the chat service
   * holds a sender's ack until then, so a node killed right after an ack has
   * already told the other nodes. `undefined` means nothing is left to wait for.
   */
  publish(envelope: BusEnvelope): Promise<void> | undefined;
  /** Call `handler` for every envelope received; returns an unsubscribe function. */
  subscribe(handler: (envelope: BusEnvelope) => void): () => void;
  /** Resolves when the bus can carry envelopes; rejects when it cannot (see above). */
  ping(): Promise<void>;
  /** Stop receiving and release resources. Idempotent. */
  close(): Promise<void>;
  /** The counters so far. */
  stats(): BusStats;
}

/** Loads a message a packet named by reference; undefined if it is not there. */
export type MessageLoader = (ref: MessageRef) => Promise<StoredMessage | undefined>;

/** Reads the newest seq of the conversations written since `sinceTs` (epoch ms). */
export type RecentHeadsLoader = (sinceTs: number) => Promise<readonly ConvHead[]>;

/** A {@linkcode RecentHeadsLoader} reading at most the last `limit` messages of `store`. */
export function storeRecentHeadsLoader(
  store: Pick<MessageStore, "recentHeads">,
  limit = 50_000,
): RecentHeadsLoader {
  return (sinceTs) => store.recentHeads(sinceTs, limit);
}

/** A {@linkcode MessageLoader} reading `store` (one row by conversation and seq). */
export function storeMessageLoader(store: Pick<MessageStore, "listMessages">): MessageLoader {
  return async function loadMessage(ref: MessageRef): Promise<StoredMessage | undefined> {
    const [row] = await store.listMessages(ref.conv, { afterSeq: ref.seq - 1, limit: 1 });
    return row !== undefined && row.id === ref.id && row.seq === ref.seq ? row : undefined;
  };
}

/** The subscriber list of a bus: handlers run synchronously, in subscription order. */
export class BusHandlers {
  #handlers = new Set<(envelope: BusEnvelope) => void>();

  /** Add a handler; the returned function removes it. */
  add(handler: (envelope: BusEnvelope) => void): () => void {
    const wrapped = (e: BusEnvelope) => handler(e);
    this.#handlers.add(wrapped);
    return () => {
      this.#handlers.delete(wrapped);
    };
  }

  /** Call every handler with `envelope`; a throwing handler is logged and skipped. */
  emit(envelope: BusEnvelope): void {
    for (const handler of [...this.#handlers]) {
      try {
        handler(envelope);
      } catch (error) {
        logger.error("Bus handler failed: {error}", { error });
      }
    }
  }

  /** Drop every handler. */
  clear(): void {
    this.#handlers.clear();
  }
}
