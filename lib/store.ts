/**
 * The store seam: small interfaces for users, tokens, contacts, groups,
 * attachments and messages, and {@linkcode Store}, which joins them.
 * Implementations: `store_kysely.ts` (SQLite and PostgreSQL) and
 * `store_memory.ts` (tests). `tests/store_contract.ts` holds the contract.
 *
 * Ids are positive integers; 0 or a negative id never names a row. Times are
 * epoch milliseconds. No method returns a password hash or a token to a
 * caller that asked about another user.
 *
 * @module
 */

/** Sex codes of the original system: men, women, unknown. */
export type Sex = "M" | "W" | "U";

/** A user as anyone may see it: no password hash, salt or token. */
export interface PublicUser {
  readonly id: number;
  readonly mobile: string;
  readonly nickname: string;
  readonly avatar: string;
  readonly sex: Sex;
  readonly memo: string;
  /** Creation time, epoch ms. */
  readonly createdAt: number;
}

/** What registration stores; `passwordHash` is already hashed by `auth.ts`. */
export interface NewUser {
  readonly mobile: string;
  readonly passwordHash: string;
  readonly nickname: string;
  readonly avatar: string;
  readonly sex: Sex;
  readonly memo: string;
}

/** The fields a user may change on their own profile; absent means keep. */
export interface ProfilePatch {
  readonly nickname?: string;
  readonly avatar?: string;
  readonly sex?: Sex;
  readonly memo?: string;
}

/** Users and their credentials. */
export interface UserStore {
  /** Insert a user. Must throw `ConflictError` if the mobile is taken (also under a race). */
  createUser(user: NewUser, now: number): Promise<PublicUser>;
  /** The user with this id, or undefined. */
  findUser(id: number): Promise<PublicUser | undefined>;
  /** The user and stored password hash for a login, or undefined. */
  findCredentials(
    mobile: string,
  ): Promise<{ user: PublicUser; passwordHash: string } | undefined>;
  /** Change a user's own profile; returns the new row, undefined if no such user. */
  updateProfile(
    id: number,
    patch: ProfilePatch,
  ): Promise<PublicUser | undefined>;
}

/** Login tokens, stored only as hashes so a copy of the store grants nothing. */
export interface TokenStore {
  /** Record a token hash for `userId`, valid until `expiresAt` (epoch ms). */
  createToken(
    tokenHash: string,
    userId: number,
    expiresAt: number,
  ): Promise<void>;
  /** The user id of an unexpired, unrevoked token hash at time `now`, or undefined. */
  findTokenUser(tokenHash: string, now: number): Promise<number | undefined>;
  /** Revoke one token; revoking an unknown token is not an error (idempotent). */
  revokeToken(tokenHash: string): Promise<void>;
  /** Delete tokens expired before `now`; returns how many went. */
  purgeExpiredTokens(now: number): Promise<number>;
}

/** Friendships: always mutual, at most one per pair. */
export interface ContactStore {
  /**
   * Make `a` and `b` friends both ways in one transaction. Returns "added",
   * or "exists" when they already were (no duplicate rows, also under a race).
   * Must throw `NotFoundError` if either user does not exist. `a === b` is a
   * caller error (`RangeError`).
   */
  addFriendship(a: number, b: number, now: number): Promise<"added" | "exists">;
  /** The friends of `userId`, ordered by id. */
  listFriends(userId: number): Promise<PublicUser[]>;
  /** Whether `a` and `b` are friends. */
  areFriends(a: number, b: number): Promise<boolean>;
}

/** A group ("community") as the original system shows it. */
export interface Group {
  readonly id: number;
  readonly name: string;
  readonly ownerId: number;
  readonly icon: string;
  /** Category 0-4 of the create page. */
  readonly cate: number;
  readonly memo: string;
  /** Creation time, epoch ms. */
  readonly createdAt: number;
}

/** What group creation stores. */
export interface NewGroup {
  readonly name: string;
  readonly ownerId: number;
  readonly icon: string;
  readonly cate: number;
  readonly memo: string;
}

/**
 * How long a repeated group create returns the group the first one made,
 * ms: a retry after an answer that was lost although the create committed
 * (a database deadline on COMMIT, a cut connection) must not make a second
 * group. A minute covers a client's retries; the wire has no request id.
 */
export const GROUP_REPEAT_WINDOW_MS = 60_000;

/** Groups and membership. */
export interface GroupStore {
  /**
   * Create a group and make its owner a member, in one transaction. Must
   * throw `LimitError` when the owner already owns `maxPerOwner` groups
   * (also when two creates race) and `NotFoundError` if the owner is unknown.
   * A repeat — the owner's group with the same name, icon, cate and memo,
   * created at most {@linkcode GROUP_REPEAT_WINDOW_MS} before `now` — returns
   * that group and creates nothing (also when the repeats race, and also at
   * the limit).
   */
  createGroup(
    group: NewGroup,
    options: { now: number; maxPerOwner: number },
  ): Promise<Group>;
  /** The group with this id, or undefined. */
  findGroup(id: number): Promise<Group | undefined>;
  /**
   * Add `userId` to group `groupId`. Idempotent: "exists" when already a
   * member. Must throw `NotFoundError` if the group or user does not exist.
   */
  joinGroup(
    userId: number,
    groupId: number,
    now: number,
  ): Promise<"joined" | "exists">;
  /** The groups `userId` belongs to, ordered by id. */
  listGroups(userId: number): Promise<Group[]>;
  /** The member user ids of `groupId`, ordered. Empty for an unknown group. */
  listMembers(groupId: number): Promise<number[]>;
  /** Whether `userId` is a member of `groupId`. */
  isMember(userId: number, groupId: number): Promise<boolean>;
}

/** Metadata of one uploaded file (the bytes live on disk under `mnt/`). */
export interface Attachment {
  /** Server-chosen file name, e.g. `0f3c…9a.png`. */
  readonly name: string;
  readonly ownerId: number;
  /** Content type detected from the bytes, never the client's claim. */
  readonly mime: string;
  readonly size: number;
  readonly createdAt: number;
}

/** Attachment metadata. */
export interface AttachmentStore {
  /** Record an upload. Must throw `ConflictError` if the name exists. */
  recordAttachment(attachment: Attachment): Promise<void>;
  /** The attachment with this name, or undefined. */
  findAttachment(name: string): Promise<Attachment | undefined>;
  /** Total bytes uploaded by `ownerId` (for quotas). */
  attachmentBytes(ownerId: number): Promise<number>;
}

/** A chat message as the sender's client frames it, before the store stamps it. */
export interface NewMessage {
  /** Sender: always the authenticated user, never the client's claim. */
  readonly userid: number;
  /** 10 = 1:1, 11 = group. */
  readonly cmd: number;
  /** Peer user id (cmd 10) or group id (cmd 11). */
  readonly dstid: number;
  readonly media: number;
  readonly content: string;
  readonly pic: string;
  readonly url: string;
  readonly memo: string;
  readonly amount: number;
  /** Client message id: a retry with the same (userid, cid) is the same message. */
  readonly cid: string;
}

/** A stored message: the frame plus the store's stamps. */
export interface StoredMessage extends NewMessage {
  /** Store-wide message id. */
  readonly id: number;
  /** Conversation key: `u:<low>:<high>` for 1:1, `g:<groupId>` for groups. */
  readonly conv: string;
  /** Position in the conversation, 1, 2, 3, … with no gaps. */
  readonly seq: number;
  /** Server time, epoch ms. */
  readonly ts: number;
}

/** What one append gives its caller: the stored row, and whether it was stored before. */
export interface AppendResult {
  readonly message: StoredMessage;
  /** True when (userid, cid) was stored before; `message` is that first row. */
  readonly duplicate: boolean;
}

/** One item of {@linkcode MessageStore.appendMessages}: a message and its server time. */
export interface AppendRequest {
  readonly message: NewMessage;
  /** Server time for `ts`, epoch ms. */
  readonly now: number;
}

/** The outcome of one item of a batch: its result, or the error that item alone hit. */
export type AppendOutcome =
  | { readonly ok: true; readonly result: AppendResult }
  | { readonly ok: false; readonly error: unknown };

/** Messages, each with a gap-free per-conversation sequence number. */
export interface MessageStore {
  /**
   * Store a message with the next `seq` of its conversation, atomically.
   * If (userid, cid) was stored before, returns that first message with
   * `duplicate: true` and stores nothing. Calls made while an earlier one is
   * still being written may be committed together (group commit); seqs
   * still follow the order of the calls.
   */
  appendMessage(
    message: NewMessage,
    now: number,
  ): Promise<AppendResult>;
  /**
   * Store a batch (a group commit): as if each item were appended in order,
   * in as few transactions as possible. Returns one outcome per item, same
   * order. A repeat (userid, cid), also of an earlier item of the same batch,
   * gives that first message with `duplicate: true`. An item that fails
   * alone (e.g. a constraint) gets `ok: false` without failing the others;
   * the promise rejects only when the store itself fails.
   */
  appendMessages(batch: readonly AppendRequest[]): Promise<AppendOutcome[]>;
  /**
   * Messages of `conv` with `seq > afterSeq` (or `< beforeSeq`), in ascending
   * seq order, at most `limit`. With `beforeSeq` it returns the newest
   * `limit` below it, still ascending.
   */
  listMessages(
    conv: string,
    options: { afterSeq?: number; beforeSeq?: number; limit: number },
  ): Promise<StoredMessage[]>;
  /** The last seq of each conversation `userId` takes part in (for catch-up). */
  lastSeqs(userId: number): Promise<Map<string, number>>;
  /**
   * The newest seq of each conversation among the last `limit` messages
   * stored (by id) whose `ts >= sinceTs`, in no particular order. The bus
   * uses it when another node went silent: what that node published last
   * may not have arrived.
   */
  recentHeads(sinceTs: number, limit: number): Promise<{ conv: string; seq: number }[]>;
}

/** The whole store, as `main.ts` wires it. */
export interface Store
  extends UserStore, TokenStore, ContactStore, GroupStore, AttachmentStore, MessageStore {
  /** Check the store answers (readiness). Throws if it does not. */
  ping(): Promise<void>;
  /** Release connections. Idempotent. */
  close(): Promise<void>;
}

/** The conversation key of a 1:1 pair or a group. */
export function conversationKey(
  cmd: number,
  userid: number,
  dstid: number,
): string {
  if (cmd === 11) return `g:${dstid}`;
  const [lo, hi] = userid < dstid ? [userid, dstid] : [dstid, userid];
  return `u:${lo}:${hi}`;
}

/**
 * The client-framed fields of `message` as values, in the order of the
 * `messages` insert after `conv, seq` (and of the append worker's wire batch).
 */
export function newMessageValues(message: NewMessage): (string | number)[] {
  const m = message;
  return [m.userid, m.cmd, m.dstid, m.media, m.content, m.pic, m.url, m.memo, m.amount, m.cid];
}

/** The client-framed fields of `message`, nothing else (drops any stamps). */
export function newMessageFields(message: NewMessage): NewMessage {
  return {
    userid: message.userid,
    cmd: message.cmd,
    dstid: message.dstid,
    media: message.media,
    content: message.content,
    pic: message.pic,
    url: message.url,
    memo: message.memo,
    amount: message.amount,
    cid: message.cid,
  };
}
