/**
 * The metrics of one lanchat node, registered on a {@linkcode Registry}:
 * websocket connections and messages in/out, server-side closes by code
 * (queue overflows among them), bus datagram counters, store latency, the
 * event loop's lag, and a draining flag. Counters other objects already
 * keep (the bus's, the live session count) are read at scrape time through
 * {@linkcode ChatMetricsSources}.
 *
 * @module
 */

import { LIMIT_NAMES, type LimitName } from "./abuse_limits.ts";
import type { BusStats } from "./bus.ts";
import { CLOSE } from "./close_codes.ts";
import type { Counter, Histogram, Labels, Registry } from "./metrics.ts";

/** Live values read at each scrape. */
export interface ChatMetricsSources {
  /** Open websocket sessions on this node. */
  sessions(): number;
  /** The bus's counters (`Bus.stats()`), or undefined before the bus is open. */
  busStats(): BusStats | undefined;
  /** Whether the node is draining (SIGTERM received). */
  draining(): boolean;
  /** The process's memory (`Deno.memoryUsage()`); no series without it. */
  memory?(): { rss: number; heapUsed: number };
}

/** Hooks a websocket connection calls; see {@linkcode ChatMetrics}. */
export interface ConnectionMeter {
  /** One websocket message arrived from a client. */
  messageIn(): void;
  /** One websocket message was queued to a client. */
  messageOut(): void;
  /** The server closed a socket with `code`. */
  serverClosed(code: number): void;
  /** A websocket opened. */
  socketOpened(): void;
  /** A websocket finished closing (the close handshake is over, or it failed). */
  socketClosed(): void;
}

const BUS_FIELDS: readonly [keyof BusStats, string][] = [
  ["sent", "Bus envelopes (datagrams) sent"],
  ["received", "Bus envelopes (datagrams) received and accepted"],
  ["dropped", "Bus envelopes dropped (send failure or full queue)"],
  ["badSignature", "Bus envelopes refused for a bad or missing HMAC signature"],
  ["replayed", "Bus envelopes refused as replays"],
  ["malformed", "Bus envelopes refused as malformed"],
  ["oversized", "Bus envelopes refused or not sent for being too large"],
];

/** Counts of a lanchat node; also the {@linkcode ConnectionMeter} of its sockets. */
export class ChatMetrics implements ConnectionMeter {
  #in: Counter;
  #out: Counter;
  #closes: Counter;
  #overflows: Counter;
  #store: Histogram;
  #loopLag: (seconds: number) => void;
  /** {@linkcode Histogram.observer} of `#store` per store operation. */
  #storeOps = new Map<string, (seconds: number) => void>();
  #limited: Counter;
  #openSockets = 0;

  /** Register every lanchat metric on `registry`. */
  constructor(registry: Registry, sources: ChatMetricsSources) {
    registry.collect(
      "lanchat_connections",
      "Open websocket sessions on this node",
      () => [[{}, sources.sessions()]],
    );
    this.#in = registry.counter(
      "lanchat_messages_in_total",
      "Websocket messages received from clients",
    );
    this.#out = registry.counter(
      "lanchat_messages_out_total",
      "Websocket messages sent to clients",
    );
    this.#closes = registry.counter(
      "lanchat_ws_server_closes_total",
      "Websockets closed by the server, by close code",
    );
    this.#overflows = registry.counter(
      "lanchat_queue_overflows_total",
      "Websockets closed because their outbound queue passed its byte limit",
    );
    for (const [field, help] of BUS_FIELDS) {
      registry.collect(
        `lanchat_bus_${snake(field)}_total`,
        help,
        () => busSeries(sources.busStats(), field),
        { type: "counter" },
      );
    }
    this.#store = registry.histogram(
      "lanchat_store_seconds",
      "Latency of store calls in seconds, by operation",
    );
    this.#loopLag = registry.histogram(
      "lanchat_event_loop_lag_seconds",
      "How late a timer asked every 100 ms fired, in seconds: the wait the event loop adds",
    ).observer({});
    registry.collect(
      "lanchat_draining",
      "1 while the node drains before exit",
      () => [[{}, sources.draining() ? 1 : 0]],
    );
    const memory = sources.memory;
    if (memory !== undefined) {
      registry.collect(
        "lanchat_process_resident_memory_bytes",
        "Resident set size of this node's process in bytes",
        () => [[{}, memory().rss]],
      );
      registry.collect(
        "lanchat_process_heap_used_bytes",
        "JavaScript heap in use in bytes (a leak grows it; RSS may stay high after a burst)",
        () => [[{}, memory().heapUsed]],
      );
    }
    this.#limited = registry.counter(
      "lanchat_limited_total",
      "Requests, connections and frames refused by an abuse limit, by limit",
    );
    for (const c of [this.#in, this.#out, this.#overflows]) c.inc({}, 0);
    for (const limit of LIMIT_NAMES) this.#limited.inc({ limit }, 0);
  }

  /** {@linkcode ConnectionMeter.messageIn}. */
  messageIn(): void {
    this.#in.inc();
  }

  /** {@linkcode ConnectionMeter.messageOut}. */
  messageOut(): void {
    this.#out.inc();
  }

  /** {@linkcode ConnectionMeter.serverClosed}. */
  serverClosed(code: number): void {
    this.#closes.inc({ code: String(code) });
    if (code === CLOSE.queueOverflow.code) this.#overflows.inc();
  }

  /** {@linkcode ConnectionMeter.socketOpened}. */
  socketOpened(): void {
    this.#openSockets++;
  }

  /** {@linkcode ConnectionMeter.socketClosed}. */
  socketClosed(): void {
    this.#openSockets = Math.max(0, this.#openSockets - 1);
  }

  /** Websockets open or still closing (a drain waits for 0 before the listener stops). */
  get openSockets(): number {
    return this.#openSockets;
  }

  /** Count one refusal by the abuse limit `limit`. */
  limited(limit: LimitName): void {
    this.#limited.inc({ limit });
  }

  /** One reading of the event loop's lag (`loop_lag.ts`), seconds. */
  loopLag(seconds: number): void {
    this.#loopLag(seconds);
  }

  /** Record one store call of `op` that took `seconds`. */
  storeCall(op: string, seconds: number): void {
    // Once per chat message and more: the series of each op is looked up once.
    let observe = this.#storeOps.get(op);
    if (observe === undefined) {
      observe = this.#store.observer({ op });
      this.#storeOps.set(op, observe);
    }
    observe(seconds);
  }
}

function busSeries(stats: BusStats | undefined, field: keyof BusStats): [Labels, number][] {
  return stats === undefined ? [] : [[{}, stats[field]]];
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}
