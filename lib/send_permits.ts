/**
 * A per-node cache of the checks a chat send needs: are these two users
 * friends, is this user a member of that group, does that user exist.
 *
 * Only "yes" answers are kept. That is correct because nothing in this
 * codebase takes a permission back: friendships are only added
 * (`addFriendship`), memberships only added (`createGroup`, `joinGroup`),
 * users never deleted; there is no unfriend, leave, kick or account removal
 * route, and no store method that deletes a contact or membership row. A
 * "no" is asked again every time, so a friendship or join made on any node
 * counts at once. If a revoking operation is ever added, it must call
 * {@linkcode SendPermits.revokeFriendship} / {@linkcode SendPermits.revokeMembership}
 * on every node (e.g. from a bus event), or this cache must go.
 *
 * @module
 */

import type { Store } from "./store.ts";

/** The store checks the cache answers for. */
export type PermitStore = Pick<Store, "areFriends" | "isMember" | "findUser">;

/** Options of {@linkcode SendPermits}. */
export interface SendPermitsOptions {
  /** Most remembered answers; the least recently used goes first. @default {100000} */
  readonly maxEntries?: number;
}

/** Remembers granted friendships, memberships and existing users (positive answers only). */
export class SendPermits {
  #store: PermitStore;
  #max: number;
  /** Granted keys, least recently used first (a Set keeps insertion order). */
  #granted = new Set<string>();
  /** Bumped by every revoke, so a "yes" fetched before it is not stored after it. */
  #revocations = 0;

  /** Cache the checks of `store`. */
  constructor(store: PermitStore, options: SendPermitsOptions = {}) {
    this.#store = store;
    this.#max = Math.max(1, Math.floor(options.maxEntries ?? 100_000));
  }

  /** Whether `a` and `b` are friends (mutual, so one entry serves both ways). */
  areFriends(a: number, b: number): Promise<boolean> {
    const key = a < b ? `f:${a}:${b}` : `f:${b}:${a}`;
    return this.#check(key, () => this.#store.areFriends(a, b));
  }

  /** Whether `userId` is a member of `groupId`. */
  isMember(userId: number, groupId: number): Promise<boolean> {
    return this.#check(`m:${groupId}:${userId}`, () => this.#store.isMember(userId, groupId));
  }

  /** Whether user `id` exists. */
  userExists(id: number): Promise<boolean> {
    return this.#check(
      `u:${id}`,
      async () => await this.#store.findUser(id) !== undefined,
    );
  }

  /** Whether a "yes" to {@linkcode areFriends} is remembered (no store read). */
  grantedFriends(a: number, b: number): boolean {
    return this.#touch(a < b ? `f:${a}:${b}` : `f:${b}:${a}`);
  }

  /** Whether a "yes" to {@linkcode isMember} is remembered (no store read). */
  grantedMember(userId: number, groupId: number): boolean {
    return this.#touch(`m:${groupId}:${userId}`);
  }

  /** Whether a "yes" to {@linkcode userExists} is remembered (no store read). */
  grantedUser(id: number): boolean {
    return this.#touch(`u:${id}`);
  }

  /** Forget a friendship (for a future unfriend; nothing calls it today). */
  revokeFriendship(a: number, b: number): void {
    this.#revocations++;
    this.#granted.delete(a < b ? `f:${a}:${b}` : `f:${b}:${a}`);
  }

  /** Forget a membership (for a future leave or kick; nothing calls it today). */
  revokeMembership(userId: number, groupId: number): void {
    this.#revocations++;
    this.#granted.delete(`m:${groupId}:${userId}`);
  }

  /** How many answers are remembered. */
  get size(): number {
    return this.#granted.size;
  }

  /** Whether `key` is granted; a hit becomes the most recently used. */
  #touch(key: string): boolean {
    if (!this.#granted.delete(key)) return false;
    this.#granted.add(key);
    return true;
  }

  async #check(key: string, ask: () => Promise<boolean>): Promise<boolean> {
    if (this.#touch(key)) return true;
    const revocations = this.#revocations;
    const yes = await ask();
    if (yes && revocations === this.#revocations) {
      this.#granted.add(key);
      if (this.#granted.size > this.#max) {
        const oldest = this.#granted.values().next();
        if (!oldest.done) this.#granted.delete(oldest.value);
      }
    }
    return yes;
  }
}
