/**
 * The fan-out seam between nodes. The chat service publishes every stored
 * message and every membership change here; each node's subscriber hands
 * them to its dispatcher.
 *
 * @module
 */

import type { StoredMessage } from "./store.ts";

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
  };

/**
 * A publish/subscribe channel to every node of the cluster, this one included.
 *
 * Contract: delivery is **at-most-once, may drop, may reorder**. Nothing
 * downstream relies on the bus for completeness: messages are persisted
 * before they are published, and clients repair loss with catch-up.
 * `publish` must not block or throw on transport trouble (it logs and drops);
 * handlers are called for envelopes from every node including this one;
 * after `close()` no handler is called and `publish` is a no-op.
 */
export interface Bus {
  /** Send `envelope` to every node (fire and forget). */
  publish(envelope: BusEnvelope): void;
  /** Call `handler` for every envelope received; returns an unsubscribe function. */
  subscribe(handler: (envelope: BusEnvelope) => void): () => void;
  /** Stop receiving and release resources. Idempotent. */
  close(): Promise<void>;
}
