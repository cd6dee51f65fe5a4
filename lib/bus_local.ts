/**
 * The single-process {@linkcode Bus}: publish calls this process's handlers
 * and nothing leaves the process (`CHAT_BUS=local`, and tests).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Bus, BusEnvelope } from "./bus.ts";

const logger = getLogger(["chat", "bus_local"]);

/** An in-process bus. Handlers run synchronously, in subscription order. */
export class LocalBus implements Bus {
  #handlers = new Set<(envelope: BusEnvelope) => void>();
  #closed = false;

  /** Call every handler with `envelope`; a throwing handler is logged and skipped. */
  publish(envelope: BusEnvelope): void {
    if (this.#closed) return;
    for (const handler of [...this.#handlers]) {
      try {
        handler(envelope);
      } catch (error) {
        logger.error("Bus handler failed: {error}", { error });
      }
    }
  }

  /** Add a handler; the returned function removes it. */
  subscribe(handler: (envelope: BusEnvelope) => void): () => void {
    const wrapped = (e: BusEnvelope) => handler(e);
    this.#handlers.add(wrapped);
    return () => {
      this.#handlers.delete(wrapped);
    };
  }

  /** Drop all handlers; later publishes do nothing. */
  close(): Promise<void> {
    this.#closed = true;
    this.#handlers.clear();
    return Promise.resolve();
  }
}
