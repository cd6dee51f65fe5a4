/**
 * What a catch-up replays from: the store's last seq of every conversation
 * the user takes part in, and the user's groups. A catch-up may come in
 * several frames (all but the last with `more: true`, docs/protocol.md):
 * the store is read once, at the first part, and the parts together may
 * name at most the user's conversations plus one frame's worth, in at most
 * as many parts as that needs plus one, so endless parts (empty ones too)
 * cannot hold a session's live messages for ever. (`ChatService` also opens
 * the gate when no next part comes in time.)
 *
 * @module
 */

import { ClientError } from "./errors.ts";
import { MAX_CATCHUP_CONVS } from "./protocol.ts";

/** One catch-up's view of the store, shared by its parts. */
export class CatchUpParts {
  /** Last stored seq of each conversation of the user that has messages. */
  readonly last: ReadonlyMap<string, number>;
  /**
   * The keys of {@linkcode last}, and the groups the user is in (their keys
   * after a "+"), in one Set: what the session knew at the catch-up.
   */
  readonly keys: ReadonlySet<string>;
  /** Most conversations the parts may name together. */
  readonly limit: number;
  /** Most parts one catch-up may come in. */
  readonly maxParts: number;
  #named = 0;
  #parts = 0;

  /** A view of `last` (from the store) and the user's `groupIds`. */
  constructor(last: ReadonlyMap<string, number>, groupIds: readonly number[]) {
    this.last = last;
    const keys = new Set(last.keys());
    for (const id of groupIds) keys.add(`+g:${id}`);
    this.keys = keys;
    // A client names only conversations it has messages of, each once: the
    // slack is for stale entries (the server ignores those).
    this.limit = last.size + MAX_CATCHUP_CONVS;
    this.maxParts = Math.ceil(this.limit / MAX_CATCHUP_CONVS) + 1;
  }

  /**
   * Count a part naming `count` conversations. Throws `ClientError`
   * ("bad_request") when the parts so far name more than {@linkcode limit}
   * or number more than {@linkcode maxParts}.
   */
  add(count: number): void {
    this.#named += count;
    this.#parts++;
    if (this.#parts > this.maxParts) {
      throw new ClientError(
        "bad_request",
        `A catch-up may come in at most ${this.maxParts} parts; start a new catch-up`,
      );
    }
    if (this.#named > this.limit) {
      throw new ClientError(
        "bad_request",
        `A catch-up in parts may name at most ${this.limit} conversations (yours, plus ${MAX_CATCHUP_CONVS}); start a new catch-up`,
      );
    }
  }
}
