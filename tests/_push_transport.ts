/** A bus transport a test drives by hand: it pushes packets in, and sends go nowhere. */

import type { Transport, TransportListener } from "../lib/bus_transport.ts";

/** Hands each packet the test pushes to the bus; `listener` is set while started. */
export class PushTransport implements Transport {
  listener: TransportListener | undefined;
  start(listener: TransportListener): void {
    this.listener = listener;
  }
  send(_packet: Uint8Array): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.listener = undefined;
    return Promise.resolve();
  }
  ping(): Promise<void> {
    return Promise.resolve();
  }
}
