/**
 * Which other nodes are alive, as far as the bus can tell. Every node sends
 * at least one packet per head interval (a keepalive when it has nothing
 * else), so a node not heard from for `timeoutMs` crashed or was cut off:
 * the last messages it published may not have arrived here, and nothing
 * from it will announce them. Pure: the caller feeds it packet times and
 * asks at each tick.
 *
 * @module
 */

/** Last-heard times of the other nodes. */
export class PeerWatch {
  #lastHeard = new Map<string, number>();
  #timeoutMs: number;

  /** Nodes silent for longer than `timeoutMs` count as lost. */
  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /** A genuine (signed) packet from `nodeId` was handled at `now`. */
  heard(nodeId: string, now: number): void {
    this.#lastHeard.set(nodeId, now);
  }

  /**
   * The nodes silent for longer than the timeout at `now`, each reported
   * once; a lost node that speaks again is watched again.
   */
  lost(now: number): string[] {
    const gone: string[] = [];
    for (const [nodeId, at] of this.#lastHeard) {
      if (now - at > this.#timeoutMs) gone.push(nodeId);
    }
    for (const nodeId of gone) this.#lastHeard.delete(nodeId);
    return gone;
  }

  /** How many nodes are being watched. */
  get size(): number {
    return this.#lastHeard.size;
  }
}
