/**
 * The draining flag of one node. SIGTERM flips it once: `/readyz` turns
 * 503, new websocket upgrades are refused with 503 (so nginx tries the
 * next node), and the chat service closes its sockets with "reconnect
 * elsewhere" once their in-flight frames are stored.
 *
 * @module
 */

/** Whether this node is on its way out. One instance per process, made in `main.ts`. */
export class DrainState {
  #draining = false;
  #since: number | undefined;
  #now: () => number;

  /** @param options.now Clock in epoch ms. @default {Date.now} */
  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** True once {@linkcode start} was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /** When draining started (epoch ms), if it did. */
  get since(): number | undefined {
    return this.#since;
  }

  /** Start draining; returns false when it had already started. */
  start(): boolean {
    if (this.#draining) return false;
    this.#draining = true;
    this.#since = this.#now();
    return true;
  }
}

/** Options of {@linkcode waitUntil}. */
export interface WaitUntilOptions {
  /** Give up after this long. @default {2000} */
  timeoutMs?: number;
  /** Poll interval. @default {20} */
  intervalMs?: number;
}

/** Resolve with true once `done()` is true, or false after the timeout. */
export async function waitUntil(
  done: () => boolean,
  options: WaitUntilOptions = {},
): Promise<boolean> {
  const deadline = Date.now() + (options.timeoutMs ?? 2000);
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
  return true;
}
