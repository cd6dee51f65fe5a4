/**
 * The local routing table: which sessions of which users live on this node,
 * and which local users belong to which group (an inverted index, so a group
 * message touches only its members, never every client).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { GroupStore, StoredMessage } from "./store.ts";
import { CMD_ROOM_MSG, encode, messageFrame, parseConv } from "./protocol.ts";

const logger = getLogger(["chat", "dispatcher"]);

/** The slice of {@linkcode GroupStore} the dispatcher reads. */
export type MembershipStore = Pick<GroupStore, "listGroups" | "listMembers">;

/**
 * Something that can take a message: one session.
 *
 * Contract: `id` is unique among live targets; `deliver` must not block or
 * throw (a slow target queues or closes itself, it never delays others).
 */
export interface DeliveryTarget {
  /** Session id, unique across the cluster. */
  readonly id: string;
  /** The authenticated user. */
  readonly userId: number;
  /** Take one message; `text` is its encoded frame, shared by all targets. */
  deliver(message: StoredMessage, text: string): void;
  /**
   * `conv` has messages up to `seq` in the store (a node's announcement):
   * a target that is behind pulls the rest. Must not block or throw.
   */
  head?(conv: string, seq: number): void;
  /**
   * The target's user just joined the group `conv`: follow it from now on,
   * so announcements repair even its first message; with `seq` (the
   * group's newest before the join), from the one after it, sending what
   * came since. Must not block or throw.
   */
  joined?(conv: string, seq?: number): void;
}

/** Counts of the dispatcher's tables; all zero when nobody is connected. */
export interface DispatcherStats {
  /** Users with at least one local session. */
  readonly users: number;
  /** Local sessions. */
  readonly sessions: number;
  /** Groups with at least one local member online. */
  readonly groups: number;
  /** (group, local user) pairs in the index. */
  readonly memberships: number;
  /** Users whose group list is still loading. */
  readonly loading: number;
}

/** Options for {@linkcode Dispatcher.deliver}. */
export interface DeliverOptions {
  /** A session that must not receive it (the sender's, which got an ack). */
  exceptSession?: string | undefined;
}

/**
 * One locally connected user. Arrays, not Sets: a user has a few sessions
 * and groups, and each idle connection pays for these (issue #7: two Sets
 * per user cost some 350 bytes, these two arrays about 60).
 */
interface LocalUser {
  readonly sessions: DeliveryTarget[];
  /** Groups indexed for the user (to clean the group index when they leave). */
  groups: number[];
}

/** The client map and group index of one node. */
export class Dispatcher {
  #membership: MembershipStore;
  /** user → their live sessions and indexed groups */
  #users = new Map<number, LocalUser>();
  /** group → local users */
  #groups = new Map<number, Set<number>>();
  /** user → their group list being loaded */
  #loading = new Map<number, Promise<void>>();

  /** Build a dispatcher reading group membership from `membership`. */
  constructor(membership: MembershipStore) {
    this.#membership = membership;
  }

  /**
   * Register a session. The first session of a user loads their groups;
   * later ones (another tab) join the same entry and evict nobody. Resolves
   * once the user's groups are indexed; on a store failure the session is
   * removed again and the error is rethrown.
   */
  async add(target: DeliveryTarget): Promise<void> {
    const { userId } = target;
    let user = this.#users.get(userId);
    if (user === undefined) {
      // Arrays made at their size: a first push would reserve 17 slots.
      user = { sessions: [target], groups: [] };
      this.#users.set(userId, user);
      this.#loading.set(userId, this.#load(userId, user));
    } else if (!user.sessions.includes(target)) {
      user.sessions.push(target);
    }
    try {
      await this.#loading.get(userId);
    } catch (error) {
      this.remove(target);
      throw error;
    }
  }

  async #load(userId: number, user: LocalUser): Promise<void> {
    try {
      const groups = await this.#membership.listGroups(userId);
      // Everyone may have left while the store answered.
      if (this.#users.get(userId) !== user) return;
      const ids = groups.map((g) => g.id);
      // Groups joined while the list loaded are indexed already.
      for (const id of user.groups) if (!ids.includes(id)) ids.push(id);
      user.groups = ids;
      for (const id of ids) this.#addMember(id, userId);
    } finally {
      if (this.#users.get(userId) === user) this.#loading.delete(userId);
    }
  }

  /** Unregister a session; drops every map entry that becomes empty. Idempotent. */
  remove(target: DeliveryTarget): void {
    const { userId } = target;
    const user = this.#users.get(userId);
    const at = user?.sessions.indexOf(target) ?? -1;
    if (user === undefined || at < 0) return;
    user.sessions.splice(at, 1);
    if (user.sessions.length > 0) return;
    this.#users.delete(userId);
    this.#loading.delete(userId);
    for (const groupId of user.groups) {
      const members = this.#groups.get(groupId);
      members?.delete(userId);
      if (members?.size === 0) this.#groups.delete(groupId);
    }
  }

  /**
   * `userId` joined or created `groupId`: index it now if the user is
   * connected here, so the next group message reaches them, and let the
   * user's sessions follow the group from after `seq` (its newest seq
   * before the join; unknown from older nodes). Idempotent.
   */
  memberJoined(groupId: number, userId: number, seq?: number): void {
    const user = this.#users.get(userId);
    if (user === undefined) return;
    const known = user.groups.includes(groupId);
    this.#index(groupId, userId);
    if (known) return;
    for (const target of [...user.sessions]) {
      try {
        target.joined?.(`g:${groupId}`, seq);
      } catch (error) {
        logger.error("Session {session} failed to follow a joined group: {error}", {
          session: target.id,
          error,
        });
      }
    }
  }

  /**
   * Read the members of `groupIds` from the store and index every one
   * connected here that the index lacks, as {@linkcode memberJoined} does:
   * after a partition or a bus outage a join's announcement may have been
   * lost, and nothing else would tell this node. Such a session follows the
   * group from its newest seq now; what was sent in it before reaches the
   * client with its next catch-up. Store failures are logged. Resolves with
   * how many memberships were added.
   */
  async resyncGroups(groupIds: Iterable<number>): Promise<number> {
    let added = 0;
    for (const groupId of groupIds) {
      let members: number[];
      try {
        members = await this.#membership.listMembers(groupId);
      } catch (error) {
        logger.error("Cannot read the members of group {groupId}: {error}", { groupId, error });
        continue;
      }
      for (const userId of members) {
        const user = this.#users.get(userId);
        if (user === undefined || user.groups.includes(groupId)) continue;
        this.memberJoined(groupId, userId);
        added++;
      }
    }
    if (added > 0) {
      logger.warn("Indexed {added} group membership(s) whose announcement was lost", { added });
    }
    return added;
  }

  #index(groupId: number, userId: number): void {
    const user = this.#users.get(userId);
    if (user !== undefined && !user.groups.includes(groupId)) user.groups.push(groupId);
    this.#addMember(groupId, userId);
  }

  #addMember(groupId: number, userId: number): void {
    let members = this.#groups.get(groupId);
    if (members === undefined) {
      members = new Set();
      this.#groups.set(groupId, members);
    }
    members.add(userId);
  }

  /**
   * Hand `message` to the local sessions that should see it: for 1:1 the
   * recipient's and the sender's, for a group every local member's, except
   * `options.exceptSession`. Returns how many sessions got it.
   */
  deliver(message: StoredMessage, options: DeliverOptions = {}): number {
    const shared = { text: undefined as string | undefined, count: 0 };
    if (message.cmd === CMD_ROOM_MSG) {
      for (const userId of this.#groups.get(message.dstid) ?? []) {
        this.#deliverTo(userId, message, options, shared);
      }
    } else {
      // 1:1 (no Set per message): the recipient's sessions, then the sender's other ones.
      this.#deliverTo(message.dstid, message, options, shared);
      if (message.userid !== message.dstid) {
        this.#deliverTo(message.userid, message, options, shared);
      }
    }
    return shared.count;
  }

  /** Hand `message` to `userId`'s sessions; the frame text is encoded once, on first need. */
  #deliverTo(
    userId: number,
    message: StoredMessage,
    options: DeliverOptions,
    shared: { text: string | undefined; count: number },
  ): void {
    const sessions = this.#users.get(userId)?.sessions;
    if (sessions === undefined) return;
    // A target may close (and leave the array) while it takes the message.
    const targets = sessions.length === 1 ? sessions : [...sessions];
    for (const target of targets) {
      if (target.id === options.exceptSession) continue;
      shared.text ??= encode(messageFrame(message));
      try {
        target.deliver(message, shared.text);
        shared.count++;
      } catch (error) {
        logger.error("Session {session} failed to take a message: {error}", {
          session: target.id,
          error,
        });
      }
    }
  }

  /**
   * A node announced that `conv` reached `seq`: tell the local sessions
   * that should see it (so a lost tail is pulled from the store). Returns
   * how many sessions were told; an unparsable key tells nobody.
   */
  head(conv: string, seq: number): number {
    let users: Iterable<number>;
    try {
      const ref = parseConv(conv);
      users = ref.kind === "group" ? this.#groups.get(ref.groupId) ?? [] : [ref.a, ref.b];
    } catch {
      return 0;
    }
    let count = 0;
    for (const userId of users) {
      for (const target of [...this.#users.get(userId)?.sessions ?? []]) {
        if (target.head === undefined) continue;
        try {
          target.head(conv, seq);
          count++;
        } catch (error) {
          logger.error("Session {session} failed to take a head: {error}", {
            session: target.id,
            error,
          });
        }
      }
    }
    return count;
  }

  /** The groups indexed for `userId` (loaded at their first session, plus joins since); a copy. */
  groupsOf(userId: number): number[] {
    return [...this.#users.get(userId)?.groups ?? []];
  }

  /** The local sessions of `userId` (a copy). */
  sessionsOf(userId: number): DeliveryTarget[] {
    return [...this.#users.get(userId)?.sessions ?? []];
  }

  /** Counts of every table, so tests can prove nothing leaked. */
  stats(): DispatcherStats {
    let sessions = 0;
    for (const u of this.#users.values()) sessions += u.sessions.length;
    let memberships = 0;
    for (const m of this.#groups.values()) memberships += m.size;
    return {
      users: this.#users.size,
      sessions,
      groups: this.#groups.size,
      memberships,
      loading: this.#loading.size,
    };
  }
}
