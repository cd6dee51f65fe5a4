/**
 * The single-process {@linkcode Bus}: publish calls this process's handlers
 * and nothing leaves the process (`CHAT_BUS=local`, and tests).
 *
 * @module
 */

import { type Bus, type BusEnvelope, BusHandlers, type BusStats } from "./bus.ts";

/** An in-process bus. Handlers run synchronously, in subscription order. */
export class LocalBus implements Bus {
  #handlers = new BusHandlers();
  #closed = false;
  #published = 0;

  /** Call every handler with `envelope`; a throwing handler is logged and skipped. */
  publish(envelope: BusEnvelope): undefined {
    if (this.#closed) return;
    this.#published++;
    this.#handlers.emit(envelope);
  }

  /** Add a handler; the returned function removes it. */
  subscribe(handler: (envelope: BusEnvelope) => void): () => void {
    return this.#handlers.add(handler);
  }

  /** Resolves while open (nothing can fail in-process); rejects after `close()`. */
  ping(): Promise<void> {
    return this.#closed ? Promise.reject(new Error("Local bus closed")) : Promise.resolve();
  }

  /** Drop all handlers; later publishes do nothing. */
  close(): Promise<void> {
    this.#closed = true;
    this.#handlers.clear();
    return Promise.resolve();
  }

  /** Nothing crosses a process: only `sent` counts (envelopes published). */
  stats(): BusStats {
    return {
      sent: this.#published,
      received: 0,
      dropped: 0,
      badSignature: 0,
      replayed: 0,
      malformed: 0,
      oversized: 0,
    };
  }
}
