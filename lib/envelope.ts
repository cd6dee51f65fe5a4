/**
 * The wire form of a bus envelope, shared by the UDP and Redis buses.
 *
 * A packet is `"LC" 0x01` (3 bytes), a 32-byte HMAC-SHA256 tag, then a UTF-8
 * JSON body. The tag covers the 3-byte prefix and the body and is made with
 * the cluster secret (`CHAT_SECRET`). The body names the sending node (`n`),
 * a random epoch chosen at each start (`e`), a per-start counter (`c`) and
 * the send time (`t`), so receivers can drop replays. A message too large
 * for `maxBytes` travels by reference (`{id, conv, seq}`) and the receiver
 * loads it from the store; nothing is ever truncated. Pure apart from
 * WebCrypto: no sockets, no clocks unless passed in.
 *
 * @module
 */

import type { BusEnvelope, MessageRef } from "./bus.ts";
import type { StoredMessage } from "./store.ts";

const PREFIX = new Uint8Array([0x4c, 0x43, 0x01]);
const TAG_BYTES = 32;
const HEADER_BYTES = PREFIX.length + TAG_BYTES;

/** Largest datagram the UDP bus sends, so nothing relies on IP fragmentation. */
export const DATAGRAM_MAX_BYTES = 1200;

/** Why a packet was refused; each maps to one bus counter. */
export type EnvelopeErrorReason =
  | "oversized"
  | "unsigned"
  | "bad_signature"
  | "malformed"
  | "replayed";

/** A packet that must be dropped, with the reason. */
export class EnvelopeError extends Error {
  /** Why it was refused. */
  readonly reason: EnvelopeErrorReason;
  /**
   * For a correctly signed packet refused for its send time: its node, and
   * how far its clock is ahead of this one's (ms, negative when behind).
   */
  readonly clock?: { readonly nodeId: string; readonly skewMs: number };

  /** Build an error for `reason`. */
  constructor(
    reason: EnvelopeErrorReason,
    message: string,
    clock?: { readonly nodeId: string; readonly skewMs: number },
  ) {
    super(message);
    this.name = "EnvelopeError";
    this.reason = reason;
    if (clock !== undefined) this.clock = clock;
  }
}

/** What a packet carries: a bus envelope, or a message by reference. */
export type WirePayload =
  | BusEnvelope
  | {
    /** A message too large to travel inline: load it from the store. */
    readonly kind: "message_ref";
    readonly ref: MessageRef;
    readonly exceptSession?: string;
  };

/** A packet that passed every check. */
export type OpenedEnvelope =
  | {
    readonly self: true;
    /** Signed with this node's id in another epoch: a second node runs with the same `CHAT_NODE_ID`. */
    readonly twin: boolean;
  }
  | {
    readonly self: false;
    /** The sending node. */
    readonly nodeId: string;
    /** The sending node's epoch: a new one means it restarted. */
    readonly epoch: string;
    readonly payload: WirePayload;
  };

/** Options of {@linkcode EnvelopeCodec}. */
export interface EnvelopeCodecOptions {
  /** The cluster secret (at least 16 bytes). */
  readonly secret: string;
  /** This node's id; packets carrying it are this node's own echo. */
  readonly nodeId: string;
  /** Largest packet sent or accepted. @default {DATAGRAM_MAX_BYTES} */
  readonly maxBytes?: number;
  /** This start's epoch. @default {random} */
  readonly epoch?: string;
  /** Clock in epoch ms. @default {Date.now} */
  readonly now?: () => number;
  /** Packets whose send time is further than this from now are replays. @default {300000} */
  readonly maxAgeMs?: number;
  /** Counters this far below the highest seen are replays. @default {1024} */
  readonly window?: number;
  /** Senders (node, epoch) remembered; the least recently heard is forgotten. @default {4096} */
  readonly maxSenders?: number;
}

/** Signs, checks and (de)serialises packets for one node. */
export class EnvelopeCodec {
  #key: CryptoKey;
  #nodeId: string;
  #epoch: string;
  #counter = 0;
  #maxBytes: number;
  #now: () => number;
  #maxAgeMs: number;
  #window: number;
  #maxSenders: number;
  #senders = new Map<string, ReplayWindow>();

  private constructor(key: CryptoKey, options: EnvelopeCodecOptions) {
    this.#key = key;
    this.#nodeId = options.nodeId;
    this.#epoch = options.epoch ?? randomEpoch();
    this.#maxBytes = options.maxBytes ?? DATAGRAM_MAX_BYTES;
    this.#now = options.now ?? Date.now;
    this.#maxAgeMs = options.maxAgeMs ?? 300_000;
    this.#window = options.window ?? 1024;
    this.#maxSenders = options.maxSenders ?? 4096;
  }

  /** Import the secret as an HMAC-SHA256 key and build the codec. */
  static async create(options: EnvelopeCodecOptions): Promise<EnvelopeCodec> {
    if (new TextEncoder().encode(options.secret).length < 16) {
      throw new RangeError("The cluster secret must have at least 16 bytes");
    }
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(options.secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    return new EnvelopeCodec(key, options);
  }

  /** This node's id. */
  get nodeId(): string {
    return this.#nodeId;
  }

  /** Largest packet this codec sends or accepts. */
  get maxBytes(): number {
    return this.#maxBytes;
  }

  /**
   * Sign `envelope` into one packet. A message that does not fit goes by
   * reference; anything else that does not fit throws `EnvelopeError`
   * ("oversized"): it is never truncated.
   */
  async seal(envelope: WirePayload): Promise<Uint8Array> {
    let body = this.#body(envelope);
    if (HEADER_BYTES + body.length > this.#maxBytes && envelope.kind === "message") {
      const { id, conv, seq } = envelope.message;
      body = this.#body({
        kind: "message_ref",
        ref: { id, conv, seq },
        ...(envelope.exceptSession === undefined ? {} : { exceptSession: envelope.exceptSession }),
      });
    }
    if (HEADER_BYTES + body.length > this.#maxBytes) {
      throw new EnvelopeError(
        "oversized",
        `A ${envelope.kind} envelope needs ${
          HEADER_BYTES + body.length
        } bytes, over ${this.#maxBytes}`,
      );
    }
    const packet = new Uint8Array(HEADER_BYTES + body.length);
    packet.set(PREFIX, 0);
    packet.set(body, HEADER_BYTES);
    const signed = new Uint8Array(PREFIX.length + body.length);
    signed.set(PREFIX, 0);
    signed.set(body, PREFIX.length);
    const tag = await crypto.subtle.sign("HMAC", this.#key, signed);
    packet.set(new Uint8Array(tag), PREFIX.length);
    return packet;
  }

  #body(envelope: WirePayload): Uint8Array {
    this.#counter++;
    const head = { v: 1, n: this.#nodeId, e: this.#epoch, c: this.#counter, t: this.#now() };
    let rest: Record<string, unknown>;
    switch (envelope.kind) {
      case "message":
        rest = { k: "m", m: envelope.message, x: envelope.exceptSession };
        break;
      case "message_ref":
        rest = { k: "r", r: envelope.ref, x: envelope.exceptSession };
        break;
      case "member":
        // Older nodes ignore `s` (they read `g` and `u` only).
        rest = { k: "g", g: envelope.groupId, u: envelope.userId, s: envelope.seq };
        break;
      case "heads":
        rest = { k: "h", h: envelope.heads.map((h) => [h.conv, h.seq]) };
        break;
    }
    return new TextEncoder().encode(JSON.stringify({ ...head, ...rest }));
  }

  /**
   * Check and decode one packet. Throws `EnvelopeError` for an oversized,
   * unsigned, badly signed, malformed or replayed packet; returns
   * `{self: true}` for this node's own echo.
   */
  async open(packet: Uint8Array): Promise<OpenedEnvelope> {
    if (packet.length > this.#maxBytes) {
      throw new EnvelopeError("oversized", `Packet of ${packet.length} bytes`);
    }
    if (packet.length < PREFIX.length || PREFIX.some((b, i) => packet[i] !== b)) {
      throw new EnvelopeError("unsigned", "Packet without the signed-envelope prefix");
    }
    if (packet.length <= HEADER_BYTES) {
      throw new EnvelopeError("malformed", "Packet shorter than its header");
    }
    const tag = new Uint8Array(packet.subarray(PREFIX.length, HEADER_BYTES));
    const signed = new Uint8Array(packet.length - TAG_BYTES);
    signed.set(PREFIX, 0);
    signed.set(packet.subarray(HEADER_BYTES), PREFIX.length);
    if (!await crypto.subtle.verify("HMAC", this.#key, tag, signed)) {
      throw new EnvelopeError("bad_signature", "Signature does not match");
    }
    const body = parseBody(packet.subarray(HEADER_BYTES));
    if (body.nodeId === this.#nodeId) return { self: true, twin: body.epoch !== this.#epoch };
    this.#checkReplay(body);
    return { self: false, nodeId: body.nodeId, epoch: body.epoch, payload: body.payload };
  }

  #checkReplay(body: Body): void {
    const now = this.#now();
    if (Math.abs(now - body.time) > this.#maxAgeMs) {
      throw new EnvelopeError("replayed", `Packet sent ${now - body.time} ms from now`, {
        nodeId: body.nodeId,
        skewMs: body.time - now,
      });
    }
    const key = `${body.nodeId}\u0000${body.epoch}`;
    let window = this.#senders.get(key);
    if (window === undefined) {
      window = new ReplayWindow(this.#window);
      if (this.#senders.size >= this.#maxSenders) {
        const oldest = this.#senders.keys().next().value;
        if (oldest !== undefined) this.#senders.delete(oldest);
      }
    } else {
      this.#senders.delete(key);
    }
    this.#senders.set(key, window);
    if (!window.accept(body.counter)) {
      throw new EnvelopeError(
        "replayed",
        `Counter ${body.counter} of ${body.nodeId} seen or too old`,
      );
    }
  }
}

/** Counters seen from one (node, epoch): the highest and a sliding bitmap below it. */
class ReplayWindow {
  #size: number;
  #highest = 0;
  #seen: Uint8Array;

  constructor(size: number) {
    this.#size = size;
    this.#seen = new Uint8Array(size);
  }

  /** True (and remembered) the first time `counter` is offered inside the window. */
  accept(counter: number): boolean {
    if (counter > this.#highest) {
      const from = Math.max(this.#highest + 1, counter - this.#size + 1);
      for (let c = from; c <= counter; c++) this.#seen[c % this.#size] = 0;
      this.#highest = counter;
    } else if (counter <= this.#highest - this.#size) {
      return false;
    }
    const slot = counter % this.#size;
    if (this.#seen[slot] === 1) return false;
    this.#seen[slot] = 1;
    return true;
  }
}

interface Body {
  nodeId: string;
  epoch: string;
  counter: number;
  time: number;
  payload: WirePayload;
}

function malformed(what: string): never {
  throw new EnvelopeError("malformed", `Malformed envelope: ${what}`);
}

function parseBody(bytes: Uint8Array): Body {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    malformed("not JSON");
  }
  if (typeof raw !== "object" || raw === null) malformed("not an object");
  const o = raw as Record<string, unknown>;
  if (o["v"] !== 1) malformed("unknown version");
  const nodeId = str(o["n"], "n");
  const epoch = str(o["e"], "e");
  const counter = int(o["c"], "c");
  const time = int(o["t"], "t");
  if (counter < 1) malformed("counter below 1");
  const except = o["x"] === undefined ? {} : { exceptSession: str(o["x"], "x") };
  let payload: WirePayload;
  switch (o["k"]) {
    case "m":
      payload = { kind: "message", message: parseMessage(o["m"]), ...except };
      break;
    case "r": {
      const r = obj(o["r"], "r");
      payload = {
        kind: "message_ref",
        ref: {
          id: int(r["id"], "r.id"),
          conv: str(r["conv"], "r.conv"),
          seq: int(r["seq"], "r.seq"),
        },
        ...except,
      };
      break;
    }
    case "g":
      payload = {
        kind: "member",
        groupId: int(o["g"], "g"),
        userId: int(o["u"], "u"),
        // Absent from older nodes' envelopes.
        ...(o["s"] === undefined ? {} : { seq: int(o["s"], "s") }),
      };
      break;
    case "h": {
      if (!Array.isArray(o["h"])) malformed("h is not a list");
      const heads = (o["h"] as unknown[]).map((h) => {
        if (!Array.isArray(h) || h.length !== 2) malformed("bad head");
        return { conv: str(h[0], "h.conv"), seq: int(h[1], "h.seq") };
      });
      payload = { kind: "heads", heads };
      break;
    }
    default:
      malformed("unknown kind");
  }
  return { nodeId, epoch, counter, time, payload };
}

const MESSAGE_INTS = ["id", "userid", "cmd", "dstid", "media", "amount", "seq", "ts"] as const;
const MESSAGE_STRINGS = ["conv", "content", "pic", "url", "memo", "cid"] as const;

function parseMessage(value: unknown): StoredMessage {
  const m = obj(value, "m");
  for (const k of MESSAGE_INTS) int(m[k], `m.${k}`);
  for (const k of MESSAGE_STRINGS) str(m[k], `m.${k}`);
  const out: Record<string, unknown> = {};
  for (const k of [...MESSAGE_INTS, ...MESSAGE_STRINGS]) out[k] = m[k];
  return out as unknown as StoredMessage;
}

function obj(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    malformed(`${name} is not an object`);
  }
  return value as Record<string, unknown>;
}

function str(value: unknown, name: string): string {
  if (typeof value !== "string") malformed(`${name} is not a string`);
  return value;
}

function int(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    malformed(`${name} is not an integer`);
  }
  return value;
}

function randomEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
