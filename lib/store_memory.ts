/**
 * {@linkcode Store} in memory, for fast tests. Same contract as the SQL
 * store; every method runs to completion without yielding, so JavaScript's
 * single thread makes each one atomic.
 *
 * @module
 */

import { ConflictError, LimitError, NotFoundError } from "./errors.ts";
import {
  type AppendOutcome,
  type AppendRequest,
  type AppendResult,
  type Attachment,
  conversationKey,
  type Group,
  GROUP_REPEAT_WINDOW_MS,
  type NewGroup,
  type NewMessage,
  newMessageFields,
  type NewUser,
  type ProfilePatch,
  type PublicUser,
  type Store,
  type StoredMessage,
} from "./store.ts";

interface UserRow extends PublicUser {
  readonly passwordHash: string;
}

interface TokenRow {
  readonly userId: number;
  readonly expiresAt: number;
  revoked: boolean;
}

/** A {@linkcode Store} that keeps everything in maps; nothing survives `close()`. */
export class MemoryStore implements Store {
  #users = new Map<number, UserRow>();
  #mobiles = new Map<string, number>();
  #tokens = new Map<string, TokenRow>();
  /** owner id → friend ids */
  #friends = new Map<number, Set<number>>();
  #groups = new Map<number, Group>();
  /** group id → member ids */
  #members = new Map<number, Set<number>>();
  #attachments = new Map<string, Attachment>();
  /** conv → messages in seq order (seq = index + 1) */
  #messages = new Map<string, StoredMessage[]>();
  /** `${userid}\u0000${cid}` → message */
  #byCid = new Map<string, StoredMessage>();
  #nextUserId = 1;
  #nextGroupId = 1;
  #nextMessageId = 1;
  #closed = false;

  createUser(user: NewUser, now: number): Promise<PublicUser> {
    if (this.#mobiles.has(user.mobile)) {
      return Promise.reject(
        new ConflictError("Mobile number already registered"),
      );
    }
    const row: UserRow = {
      id: this.#nextUserId++,
      mobile: user.mobile,
      nickname: user.nickname,
      avatar: user.avatar,
      sex: user.sex,
      memo: user.memo,
      createdAt: now,
      passwordHash: user.passwordHash,
    };
    this.#users.set(row.id, row);
    this.#mobiles.set(row.mobile, row.id);
    return Promise.resolve(toPublic(row));
  }

  findUser(id: number): Promise<PublicUser | undefined> {
    const row = this.#users.get(id);
    return Promise.resolve(row && toPublic(row));
  }

  findCredentials(
    mobile: string,
  ): Promise<{ user: PublicUser; passwordHash: string } | undefined> {
    const id = this.#mobiles.get(mobile);
    const row = id === undefined ? undefined : this.#users.get(id);
    return Promise.resolve(
      row && { user: toPublic(row), passwordHash: row.passwordHash },
    );
  }

  updateProfile(
    id: number,
    patch: ProfilePatch,
  ): Promise<PublicUser | undefined> {
    const row = this.#users.get(id);
    if (row === undefined) return Promise.resolve(undefined);
    const next: UserRow = {
      ...row,
      nickname: patch.nickname ?? row.nickname,
      avatar: patch.avatar ?? row.avatar,
      sex: patch.sex ?? row.sex,
      memo: patch.memo ?? row.memo,
    };
    this.#users.set(id, next);
    return Promise.resolve(toPublic(next));
  }

  createToken(
    tokenHash: string,
    userId: number,
    expiresAt: number,
  ): Promise<void> {
    if (this.#tokens.has(tokenHash)) {
      return Promise.reject(new ConflictError("Token already exists"));
    }
    if (!this.#users.has(userId)) {
      return Promise.reject(new NotFoundError("User not found"));
    }
    this.#tokens.set(tokenHash, { userId, expiresAt, revoked: false });
    return Promise.resolve();
  }

  findTokenUser(tokenHash: string, now: number): Promise<number | undefined> {
    const row = this.#tokens.get(tokenHash);
    const valid = row !== undefined && !row.revoked && row.expiresAt > now;
    return Promise.resolve(valid ? row.userId : undefined);
  }

  revokeToken(tokenHash: string): Promise<void> {
    const row = this.#tokens.get(tokenHash);
    if (row !== undefined) row.revoked = true;
    return Promise.resolve();
  }

  purgeExpiredTokens(now: number): Promise<number> {
    let n = 0;
    for (const [hash, row] of this.#tokens) {
      if (row.expiresAt < now) {
        this.#tokens.delete(hash);
        n++;
      }
    }
    return Promise.resolve(n);
  }

  addFriendship(a: number, b: number, _now: number): Promise<"added" | "exists"> {
    if (a === b) return Promise.reject(new RangeError("Cannot befriend oneself"));
    if (!this.#users.has(a) || !this.#users.has(b)) {
      return Promise.reject(new NotFoundError("User not found"));
    }
    if (this.#friends.get(a)?.has(b)) return Promise.resolve("exists");
    addTo(this.#friends, a, b);
    addTo(this.#friends, b, a);
    return Promise.resolve("added");
  }

  listFriends(userId: number): Promise<PublicUser[]> {
    const ids = [...this.#friends.get(userId) ?? []].sort((x, y) => x - y);
    return Promise.resolve(
      ids.flatMap((id) => {
        const row = this.#users.get(id);
        return row ? [toPublic(row)] : [];
      }),
    );
  }

  areFriends(a: number, b: number): Promise<boolean> {
    return Promise.resolve(this.#friends.get(a)?.has(b) ?? false);
  }

  createGroup(
    group: NewGroup,
    options: { now: number; maxPerOwner: number },
  ): Promise<Group> {
    if (!this.#users.has(group.ownerId)) {
      return Promise.reject(new NotFoundError("User not found"));
    }
    let owned = 0;
    for (const g of this.#groups.values()) {
      if (g.ownerId !== group.ownerId) continue;
      owned++;
      const repeat = g.name === group.name && g.icon === group.icon && g.cate === group.cate &&
        g.memo === group.memo && g.createdAt >= options.now - GROUP_REPEAT_WINDOW_MS;
      if (repeat) return Promise.resolve({ ...g });
    }
    if (owned >= options.maxPerOwner) {
      return Promise.reject(
        new LimitError(
          `Cannot create group: at most ${options.maxPerOwner} groups per user`,
        ),
      );
    }
    const row: Group = {
      id: this.#nextGroupId++,
      name: group.name,
      ownerId: group.ownerId,
      icon: group.icon,
      cate: group.cate,
      memo: group.memo,
      createdAt: options.now,
    };
    this.#groups.set(row.id, row);
    addTo(this.#members, row.id, group.ownerId);
    return Promise.resolve({ ...row });
  }

  findGroup(id: number): Promise<Group | undefined> {
    const row = this.#groups.get(id);
    return Promise.resolve(row && { ...row });
  }

  joinGroup(
    userId: number,
    groupId: number,
    _now: number,
  ): Promise<"joined" | "exists"> {
    if (!this.#groups.has(groupId)) {
      return Promise.reject(new NotFoundError("Group not found"));
    }
    if (!this.#users.has(userId)) {
      return Promise.reject(new NotFoundError("User not found"));
    }
    if (this.#members.get(groupId)?.has(userId)) {
      return Promise.resolve("exists");
    }
    addTo(this.#members, groupId, userId);
    return Promise.resolve("joined");
  }

  listGroups(userId: number): Promise<Group[]> {
    const groups: Group[] = [];
    for (const [id, members] of this.#members) {
      const g = this.#groups.get(id);
      if (g && members.has(userId)) groups.push({ ...g });
    }
    return Promise.resolve(groups.sort((x, y) => x.id - y.id));
  }

  listMembers(groupId: number): Promise<number[]> {
    const ids = [...this.#members.get(groupId) ?? []];
    return Promise.resolve(ids.sort((x, y) => x - y));
  }

  isMember(userId: number, groupId: number): Promise<boolean> {
    return Promise.resolve(this.#members.get(groupId)?.has(userId) ?? false);
  }

  recordAttachment(attachment: Attachment): Promise<void> {
    if (!this.#users.has(attachment.ownerId)) {
      return Promise.reject(new NotFoundError("User not found"));
    }
    if (this.#attachments.has(attachment.name)) {
      return Promise.reject(
        new ConflictError("Attachment name already exists"),
      );
    }
    this.#attachments.set(attachment.name, { ...attachment });
    return Promise.resolve();
  }

  findAttachment(name: string): Promise<Attachment | undefined> {
    const row = this.#attachments.get(name);
    return Promise.resolve(row && { ...row });
  }

  attachmentBytes(ownerId: number): Promise<number> {
    let total = 0;
    for (const a of this.#attachments.values()) {
      if (a.ownerId === ownerId) total += a.size;
    }
    return Promise.resolve(total);
  }

  appendMessage(message: NewMessage, now: number): Promise<AppendResult> {
    return Promise.resolve(this.#append(message, now));
  }

  appendMessages(batch: readonly AppendRequest[]): Promise<AppendOutcome[]> {
    return Promise.resolve(
      batch.map(({ message, now }) => ({ ok: true, result: this.#append(message, now) })),
    );
  }

  #append(message: NewMessage, now: number): AppendResult {
    const key = `${message.userid}\u0000${message.cid}`;
    const first = this.#byCid.get(key);
    if (first) return { message: first, duplicate: true };
    const conv = conversationKey(message.cmd, message.userid, message.dstid);
    const list = this.#messages.get(conv) ?? [];
    const stored: StoredMessage = Object.freeze({
      ...newMessageFields(message),
      id: this.#nextMessageId++,
      conv,
      seq: list.length + 1,
      ts: now,
    });
    list.push(stored);
    this.#messages.set(conv, list);
    this.#byCid.set(key, stored);
    return { message: stored, duplicate: false };
  }

  listMessages(
    conv: string,
    options: { afterSeq?: number; beforeSeq?: number; limit: number },
  ): Promise<StoredMessage[]> {
    const limit = Math.max(0, Math.floor(options.limit));
    const after = options.afterSeq ?? -Infinity;
    const before = options.beforeSeq ?? Infinity;
    const hits = (this.#messages.get(conv) ?? [])
      .filter((m) => m.seq > after && m.seq < before);
    if (limit === 0) return Promise.resolve([]);
    return Promise.resolve(
      options.beforeSeq === undefined ? hits.slice(0, limit) : hits.slice(-limit),
    );
  }

  lastSeqs(userId: number): Promise<Map<string, number>> {
    const seqs = new Map<string, number>();
    for (const [conv, list] of this.#messages) {
      const last = list.at(-1);
      if (last === undefined) continue;
      const parts = conv.split(":");
      const mine = parts[0] === "u"
        ? parts[1] === String(userId) || parts[2] === String(userId)
        : this.#members.get(Number(parts[1]))?.has(userId) ?? false;
      if (mine) seqs.set(conv, last.seq);
    }
    return Promise.resolve(seqs);
  }

  recentHeads(sinceTs: number, limit: number): Promise<{ conv: string; seq: number }[]> {
    const all = [...this.#messages.values()].flat().sort((x, y) => y.id - x.id);
    const heads = new Map<string, number>();
    for (const m of all.slice(0, Math.max(0, limit))) {
      if (m.ts >= sinceTs) heads.set(m.conv, Math.max(m.seq, heads.get(m.conv) ?? 0));
    }
    return Promise.resolve([...heads].map(([conv, seq]) => ({ conv, seq })));
  }

  ping(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("Store is closed"));
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}

function toPublic(row: UserRow): PublicUser {
  return {
    id: row.id,
    mobile: row.mobile,
    nickname: row.nickname,
    avatar: row.avatar,
    sex: row.sex,
    memo: row.memo,
    createdAt: row.createdAt,
  };
}

function addTo(map: Map<number, Set<number>>, key: number, value: number) {
  const set = map.get(key) ?? new Set<number>();
  set.add(value);
  map.set(key, set);
}
