/**
 * Which other nodes are alive, as far as the bus can tell. Every node sends
 * at least one packet per head interval (a keepalive when it has nothing
 * else), so a node not heard from for `timeoutMs` crashed or was cut off,
 * and one heard with a new start epoch restarted: either way the last
 * messages it published may not have arrived here, and nothing from it will
 * announce them. `PeerWatch` is pure (the caller feeds it packet times and
 * asks at each tick); `repairAfterLoss` reads the store's recent heads.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ConvHead, RecentHeadsLoader } from "./bus.ts";

const logger = getLogger(["chat", "bus"]);

/** Lost nodes remembered for {@linkcode PeerWatch.returned}, at most; the oldest go first. */
const MAX_LOST = 4096;

/** Last-heard times (and epochs) of the other nodes. */
export class PeerWatch {
  #lastHeard = new Map<string, { at: number; epoch: string }>();
  #restarted = new Set<string>();
  /** Nodes reported lost and not heard since: when they were last heard. */
  #lostAt = new Map<string, number>();
  /** Lost nodes heard again, with when they were last heard before. */
  #returned = new Map<string, number>();
  #timeoutMs: number;

  /** Nodes silent for longer than `timeoutMs` count as lost. */
  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /**
   * A genuine (signed) packet from `nodeId` in its start `epoch` was handled
   * at `now`. A new epoch of a watched node means it restarted, perhaps
   * faster than the timeout: that counts as a loss too. A lost node heard
   * again comes back: what it published while cut off reached no one here.
   */
  heard(nodeId: string, epoch: string, now: number): void {
    const last = this.#lastHeard.get(nodeId);
    if (last !== undefined && last.epoch !== epoch) this.#restarted.add(nodeId);
    const lostAt = this.#lostAt.get(nodeId);
    if (lostAt !== undefined) {
      this.#lostAt.delete(nodeId);
      this.#returned.set(nodeId, lostAt);
    }
    this.#lastHeard.set(nodeId, { at: now, epoch });
  }

  /**
   * The nodes silent for longer than the timeout at `now`, and those that
   * restarted since the last call, each reported once; a lost node that
   * speaks again is watched again (and reported by {@linkcode returned}).
   */
  lost(now: number): string[] {
    const gone = new Set(this.#restarted);
    this.#restarted.clear();
    for (const [nodeId, { at }] of this.#lastHeard) {
      if (now - at > this.#timeoutMs) {
        gone.add(nodeId);
        this.#lastHeard.delete(nodeId);
        this.#lostAt.delete(nodeId);
        this.#lostAt.set(nodeId, at);
        if (this.#lostAt.size > MAX_LOST) {
          const oldest = this.#lostAt.keys().next().value;
          if (oldest !== undefined) this.#lostAt.delete(oldest);
        }
      }
    }
    return [...gone];
  }

  /**
   * The lost nodes heard again since the last call, each with when it was
   * last heard before it went silent: a partition healed, or a link came
   * back. Each is reported once.
   */
  returned(): { nodeId: string; silentSince: number }[] {
    const back = [...this.#returned].map(([nodeId, silentSince]) => ({ nodeId, silentSince }));
    this.#returned.clear();
    return back;
  }

  /** How many nodes are being watched. */
  get size(): number {
    return this.#lastHeard.size;
  }
}

/** What {@linkcode repairAfterLoss} needs. */
export interface RepairOptions {
  /** What happened, in the log line: "went silent" (the default), "came back", …; no braces. */
  readonly event?: string;
  /** Reads recent heads from the store; without it the loss is only logged. */
  readonly load: RecentHeadsLoader | undefined;
  /** Conversations written since then (epoch ms) are checked. */
  readonly sinceTs: number;
  /** Hands the heads to this node's sessions, as a heads envelope would. */
  readonly emit: (heads: readonly ConvHead[]) => void;
}

/**
 * `lost` went silent (or came back, or this node's link did): read the
 * store's recent heads and hand them on, so sessions here that are behind
 * pull the rest. Never throws.
 */
export async function repairAfterLoss(
  lost: readonly string[],
  options: RepairOptions,
): Promise<void> {
  const event = options.event ?? "went silent";
  if (options.load === undefined) {
    logger.warn(
      `Node(s) {nodes} ${event}; their last messages reach sessions here only after a reconnect`,
      { nodes: lost },
    );
    return;
  }
  let heads;
  try {
    heads = await options.load(options.sinceTs);
  } catch (error) {
    logger.error(`Node(s) {nodes} ${event} and recent heads cannot be read: {error}`, {
      nodes: lost,
      error,
    });
    return;
  }
  // The event is a fixed phrase of this module's callers, part of the message (tests match it).
  logger.warn(
    `Node(s) {nodes} ${event}; checking {count} recent conversations against the store`,
    { nodes: lost, count: heads.length },
  );
  // Handed on locally, not sent: no envelope size to keep under.
  if (heads.length > 0) options.emit(heads);
}
