/**
 * The websocket frame format: `CMD_*` and `MEDIA_*` constants, the frame
 * types, {@linkcode parseFrame} (client → server, pure, size-limited) and
 * {@linkcode encode} (server → client). See `docs/protocol.md`.
 *
 * Client frames keep the seed's JSON `{id,userid,cmd,dstid,media,content,
 * pic,url,memo,amount}` and add `cid`; `id` and `userid` are accepted and
 * ignored (the server stamps both).
 *
 * @module
 */

import { cidField, FrameError, int, str, validCid } from "./_frame_fields.ts";
import { type ClientError, RetryLaterError } from "./errors.ts";
import type { NewMessage, StoredMessage } from "./store.ts";

export { FrameError };

/** Heartbeat; the server answers with the same frame. */
export const CMD_HEART = 0;
/** A 1:1 message; `dstid` is the peer's user id. */
export const CMD_SINGLE_MSG = 10;
/** A group message; `dstid` is the group id. */
export const CMD_ROOM_MSG = 11;
/** Server → client: a chat message was stored (`cid`, `seq`, `id`, `conv`, `ts`). */
export const CMD_ACK = 20;
/** Server → client: a frame was refused (`code`, `msg`, `retryable`, maybe `cid`). */
export const CMD_ERROR = 21;
/** Client → server: "I have everything up to these seqs"; the server replays the rest. */
export const CMD_CATCHUP = 30;
/** Server → client: catch-up replay is done; carries the last seq of each conversation replayed. */
export const CMD_CATCHUP_DONE = 31;
/** Client → server: ask for one page of a conversation's history. */
export const CMD_HISTORY = 32;
/** Server → client: one page of history (`conv`, `rows`, maybe `rid`). */
export const CMD_HISTORY_PAGE = 33;

/** Media codes of the original system (`media` field). */
export const MEDIA_TEXT = 1;
/** Picture and text card: `content` title, `pic`, `url`, `memo`. */
export const MEDIA_NEWS = 2;
/** Voice: `url` and `amount` seconds. */
export const MEDIA_VOICE = 3;
/** Image: `url`. */
export const MEDIA_IMG = 4;
/** Red packet: `url`, `amount` cents, `memo`. */
export const MEDIA_REDPACKAGR = 5;
/** Emoji key in `content`. */
export const MEDIA_EMOJ = 6;
/** Link: `url`. */
export const MEDIA_LINK = 7;
/** Video: `pic`, `url`. */
export const MEDIA_VIDEO = 8;
/** Contact card: `content` user id, `pic`, `memo`. */
export const MEDIA_CONTACT = 9;
/** Custom (client-defined) message. */
export const MEDIA_UDEF = 100;

/** Largest accepted frame, in UTF-8 bytes. */
export const MAX_FRAME_BYTES = 64 * 1024;

/** Per-field limits, in UTF-16 code units (JavaScript string length). */
export const FIELD_LIMITS = {
  content: 16_384,
  pic: 2_048,
  url: 2_048,
  memo: 1_024,
  cid: 64,
  conv: 64,
  rid: 64,
} as const;

/**
 * Most conversations one catch-up frame may name. A client with more sends
 * its catch-up in several frames (`more: true` on all but the last).
 */
export const MAX_CATCHUP_CONVS = 1_000;
/** Largest history page. */
export const MAX_HISTORY_LIMIT = 200;
/** History page size when the client gives none. */
export const DEFAULT_HISTORY_LIMIT = 50;

/**
 * A chat message as the client sent it (after parsing): the store's
 * {@linkcode NewMessage} without `userid`, which the server stamps. `cid` is
 * empty when the client sent none.
 */
export type ChatFrame = Omit<NewMessage, "userid" | "cmd"> & {
  readonly cmd: typeof CMD_SINGLE_MSG | typeof CMD_ROOM_MSG;
};

/** A heartbeat. */
export interface HeartFrame {
  readonly cmd: typeof CMD_HEART;
}

/** A catch-up request: last seq per conversation key. */
export interface CatchUpFrame {
  readonly cmd: typeof CMD_CATCHUP;
  readonly seqs: ReadonlyMap<string, number>;
  /**
   * Also replay every other conversation of the user from seq 1. Of a
   * catch-up in parts, only the last part's counts.
   */
  readonly all: boolean;
  /**
   * A part of a catch-up in several frames, not the last: it is replayed,
   * and live messages stay held until the last part has been.
   */
  readonly more: boolean;
}

/** A history request. */
export interface HistoryFrame {
  readonly cmd: typeof CMD_HISTORY;
  readonly conv: string;
  readonly before?: number;
  readonly after?: number;
  readonly limit: number;
  /** Request id echoed in the reply; empty when absent. */
  readonly rid: string;
}

/** Any frame a client may send. */
export type ClientFrame = ChatFrame | HeartFrame | CatchUpFrame | HistoryFrame;

/** A conversation key, parsed. */
export type ConvRef =
  | { readonly kind: "user"; readonly a: number; readonly b: number }
  | { readonly kind: "group"; readonly groupId: number };

const MEDIA = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 100]);
const DECODER = new TextDecoder("utf-8", { fatal: true });
const ENCODER = new TextEncoder();

/**
 * Parse one client frame. Throws {@linkcode FrameError} naming the problem:
 * too large, not UTF-8, not JSON, unknown cmd, or a bad field; for a chat
 * frame with a valid `cid`, the error carries it.
 */
export function parseFrame(data: string | ArrayBuffer | Uint8Array): ClientFrame {
  const obj = frameObject(data);
  const cmd = int(obj, "cmd", { min: 0, max: 1_000_000 });
  if (cmd === undefined) {
    throw new FrameError('Field "cmd" is required', { field: "cmd" });
  }
  if (cmd !== CMD_SINGLE_MSG && cmd !== CMD_ROOM_MSG) return parseOther(obj, cmd);
  try {
    return parseChat(obj, cmd);
  } catch (error) {
    const cid = validCid(obj, FIELD_LIMITS.cid);
    if (!(error instanceof FrameError) || cid === undefined) throw error;
    const code = error.code === "too_large" ? "too_large" : "bad_request";
    throw new FrameError(error.message, { field: error.field, code, cid });
  }
}

/**
 * The `cid` of `data` when it parses as a chat frame's object with a valid
 * one, else undefined. Never throws: for a frame refused before parsing
 * (over the rate), so its error frame names the message.
 */
export function refusedFrameCid(data: string | ArrayBuffer | Uint8Array): string | undefined {
  try {
    const obj = frameObject(data);
    const cmd = int(obj, "cmd", { min: 0 });
    return cmd === CMD_SINGLE_MSG || cmd === CMD_ROOM_MSG
      ? validCid(obj, FIELD_LIMITS.cid)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The JSON object of a frame; throws {@linkcode FrameError} if it is none. */
function frameObject(data: string | ArrayBuffer | Uint8Array): Record<string, unknown> {
  const text = frameText(data);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new FrameError("Frame is not valid JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new FrameError("Frame must be a JSON object");
  }
  return raw as Record<string, unknown>;
}

/** A frame of `cmd` other than a chat frame. */
function parseOther(obj: Record<string, unknown>, cmd: number): ClientFrame {
  switch (cmd) {
    case CMD_HEART:
      return { cmd: CMD_HEART };
    case CMD_CATCHUP:
      return parseCatchUp(obj);
    case CMD_HISTORY:
      return parseHistory(obj);
    default:
      throw new FrameError(`Unknown cmd ${cmd}`, { field: "cmd" });
  }
}

function frameText(data: string | ArrayBuffer | Uint8Array): string {
  if (typeof data === "string") {
    // A UTF-16 unit encodes to at most 3 bytes; only measure when it could matter.
    if (
      data.length * 3 > MAX_FRAME_BYTES &&
      (data.length > MAX_FRAME_BYTES ||
        ENCODER.encode(data).length > MAX_FRAME_BYTES)
    ) {
      throw tooLarge();
    }
    return data;
  }
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length > MAX_FRAME_BYTES) throw tooLarge();
  try {
    return DECODER.decode(bytes);
  } catch {
    throw new FrameError("Frame is not valid UTF-8");
  }
}

function tooLarge(): FrameError {
  return new FrameError(`Frame exceeds ${MAX_FRAME_BYTES} bytes`, {
    code: "too_large",
  });
}

function parseChat(
  obj: Record<string, unknown>,
  cmd: typeof CMD_SINGLE_MSG | typeof CMD_ROOM_MSG,
): ChatFrame {
  const dstid = int(obj, "dstid", { min: 1 });
  if (dstid === undefined) {
    throw new FrameError('Field "dstid" is required', { field: "dstid" });
  }
  const media = int(obj, "media", { min: 0 });
  if (media === undefined) {
    throw new FrameError('Field "media" is required', { field: "media" });
  }
  if (!MEDIA.has(media)) {
    throw new FrameError(`Field "media" must be 1-9 or 100, got ${media}`, {
      field: "media",
    });
  }
  const frame: ChatFrame = {
    cmd,
    dstid,
    media,
    content: str(obj, "content", FIELD_LIMITS.content),
    pic: str(obj, "pic", FIELD_LIMITS.pic),
    url: str(obj, "url", FIELD_LIMITS.url),
    memo: str(obj, "memo", FIELD_LIMITS.memo),
    amount: int(obj, "amount", { min: 0, max: 1_000_000_000 }) ?? 0,
    cid: cidField(obj, "cid", FIELD_LIMITS.cid),
  };
  if (frame.content === "" && frame.url === "" && frame.pic === "") {
    throw new FrameError("Message has no content, url or pic", {
      field: "content",
    });
  }
  return frame;
}

function parseCatchUp(obj: Record<string, unknown>): CatchUpFrame {
  const seqs = new Map<string, number>();
  const raw = obj["seqs"];
  if (raw !== undefined && raw !== null) {
    if (typeof raw !== "object" || Array.isArray(raw)) {
      throw new FrameError('Field "seqs" must be an object of conv: seq', {
        field: "seqs",
      });
    }
    const entries = Object.entries(raw as Record<string, unknown>);
    if (entries.length > MAX_CATCHUP_CONVS) {
      throw new FrameError(
        `Field "seqs" names more than ${MAX_CATCHUP_CONVS} conversations; send the rest in another part ("more": true)`,
        { field: "seqs" },
      );
    }
    for (const [conv, seq] of entries) {
      parseConv(conv);
      if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
        throw new FrameError(
          `Seq of conversation "${conv}" must be an integer of 0 or more`,
          { field: "seqs" },
        );
      }
      seqs.set(conv, seq);
    }
  }
  return { cmd: CMD_CATCHUP, seqs, all: flag(obj, "all"), more: flag(obj, "more") };
}

/** An optional boolean field; absent is false. */
function flag(obj: Record<string, unknown>, field: "all" | "more"): boolean {
  const value = obj[field];
  if (value !== undefined && typeof value !== "boolean") {
    throw new FrameError(`Field "${field}" must be true or false`, { field });
  }
  return value === true;
}

function parseHistory(obj: Record<string, unknown>): HistoryFrame {
  const conv = obj["conv"];
  if (typeof conv !== "string") {
    throw new FrameError('Field "conv" is required', { field: "conv" });
  }
  parseConv(conv);
  const before = int(obj, "before", { min: 1 });
  const after = int(obj, "after", { min: 0 });
  if (before !== undefined && after !== undefined) {
    throw new FrameError('Give "before" or "after", not both', {
      field: "before",
    });
  }
  const limit = int(obj, "limit", { min: 1, max: MAX_HISTORY_LIMIT }) ??
    DEFAULT_HISTORY_LIMIT;
  return {
    cmd: CMD_HISTORY,
    conv,
    limit,
    rid: cidField(obj, "rid", FIELD_LIMITS.rid),
    ...(before === undefined ? {} : { before }),
    ...(after === undefined ? {} : { after }),
  };
}

/**
 * Parse a conversation key (`u:<low>:<high>` or `g:<groupId>`). Throws
 * {@linkcode FrameError} for anything else.
 */
export function parseConv(conv: string): ConvRef {
  if (conv.length <= FIELD_LIMITS.conv) {
    const u = /^u:([1-9][0-9]{0,14}):([1-9][0-9]{0,14})$/.exec(conv);
    if (u !== null) {
      const a = Number(u[1]);
      const b = Number(u[2]);
      if (a < b) return { kind: "user", a, b };
    }
    const g = /^g:([1-9][0-9]{0,14})$/.exec(conv);
    if (g !== null) return { kind: "group", groupId: Number(g[1]) };
  }
  throw new FrameError(
    `Conversation "${conv.slice(0, 80)}" is not u:<low>:<high> or g:<id>`,
    { field: "conv" },
  );
}

/** A stored message as a frame: the seed fields plus `cid`, `seq`, `ts`, `conv`. */
export interface MessageFrame extends StoredMessage {}

/** Acknowledgement of a stored chat message. */
export interface AckFrame {
  readonly cmd: typeof CMD_ACK;
  readonly cid: string;
  readonly seq: number;
  readonly id: number;
  readonly conv: string;
  readonly ts: number;
  /** True when this cid was stored before (a retry). */
  readonly dup: boolean;
}

/** A refusal. */
export interface ErrorFrame {
  readonly cmd: typeof CMD_ERROR;
  readonly code: string;
  readonly msg: string;
  readonly retryable: boolean;
  /** Seconds to wait before a retry, when the server knows (a full disk: 30). */
  readonly retryAfter?: number;
  readonly cid?: string;
}

/** End of a catch-up replay. */
export interface CatchUpDoneFrame {
  readonly cmd: typeof CMD_CATCHUP_DONE;
  /** Last seq sent for each conversation the catch-up covered. */
  readonly seqs: Readonly<Record<string, number>>;
  /** Present after a part of a catch-up in several frames that was not the last. */
  readonly more?: true;
}

/** One page of history. */
export interface HistoryPageFrame {
  readonly cmd: typeof CMD_HISTORY_PAGE;
  readonly conv: string;
  readonly rid: string;
  readonly rows: readonly MessageFrame[];
}

/** Any frame the server sends. */
export type ServerFrame =
  | MessageFrame
  | AckFrame
  | ErrorFrame
  | HeartFrame
  | CatchUpDoneFrame
  | HistoryPageFrame;

/** Serialise a server frame. */
export function encode(frame: ServerFrame): string {
  return JSON.stringify(frame);
}

/** The frame of a stored message, with fields in the seed's order. */
export function messageFrame(m: StoredMessage): MessageFrame {
  return {
    id: m.id,
    userid: m.userid,
    cmd: m.cmd,
    dstid: m.dstid,
    media: m.media,
    content: m.content,
    pic: m.pic,
    url: m.url,
    memo: m.memo,
    amount: m.amount,
    cid: m.cid,
    conv: m.conv,
    seq: m.seq,
    ts: m.ts,
  };
}

/** The error frame for a client error; `cid` ties it to a chat frame. */
export function errorFrame(error: ClientError, cid?: string): ErrorFrame {
  const frame: ErrorFrame = {
    cmd: CMD_ERROR,
    code: error.code,
    msg: error.message,
    retryable: error.retryable,
    ...(error instanceof RetryLaterError ? { retryAfter: error.retryAfterSeconds } : {}),
  };
  return cid === undefined || cid === "" ? frame : { ...frame, cid };
}
