/**
 * What the REST route modules share: the store, auth, the settings they read,
 * the clock, and an optional hook told about membership changes (so the
 * realtime layer can update its group index and tell other nodes).
 *
 * @module
 */

import type { AbuseLimits } from "../abuse_limits.ts";
import type { Auth } from "../auth.ts";
import type { Config } from "../config.ts";
import type { Store } from "../store.ts";

/** The settings the REST routes read. */
export type HttpConfig = Pick<
  Config,
  "bodyMaxBytes" | "uploadMaxBytes" | "groupsPerUser" | "tokenTtlSeconds"
>;

/**
 * A change of friendship or group membership that just committed. A join's
 * `seq` is the group's newest message seq read before the join was stored
 * (0 for a new group): the realtime layer sends the member what came after.
 */
export type MembershipChange =
  | { readonly kind: "friend_added"; readonly userId: number; readonly friendId: number }
  | {
    readonly kind: "group_joined";
    readonly userId: number;
    readonly groupId: number;
    readonly seq: number;
  };

/** Dependencies of the route modules. */
export interface RouteDeps {
  readonly store: Store;
  readonly auth: Auth;
  readonly config: HttpConfig;
  /** Clock in epoch ms. */
  readonly now: () => number;
  /**
   * Told after a friendship or membership is stored (not for "exists").
   * Must not throw; errors are logged and the request still succeeds.
   */
  readonly onMembershipChange?: (change: MembershipChange) => void;
  /**
   * Login and registration throttling, the per-user rates of user lookups,
   * friend adds and group joins, and the upload quota. @default {no limits}
   */
  readonly limits?: AbuseLimits;
}
