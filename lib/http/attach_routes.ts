/**
 * `/attach/upload` and `/mnt/<name>`: uploads with a size limit enforced while
 * reading, a type allow-list decided on content ({@linkcode sniff}),
 * server-chosen random names, and serving back with the detected type,
 * `nosniff` and a sandboxing CSP. Files are served only by attachment
 * lookup: no listing, no paths.
 *
 * @module
 */

import { Hono } from "hono";
import { join } from "node:path";
import { getLogger } from "@logtape/logtape";
import { ClientError } from "../errors.ts";
import { sniff, SNIFF_BYTES, type Sniffed } from "../sniff.ts";
import { DEFAULT_UPLOAD_CONCURRENCY } from "../config.ts";
import { UploadGate, type UploadTurn } from "../upload_gate.ts";
import { bodyChunks, mediaType, queryFields } from "./body.ts";
import { type ByteRange, parseRange } from "./byte_range.ts";
import { ok } from "./envelope.ts";
import { writeAll } from "../bytes.ts";
import { parseBoundary } from "./multipart.ts";
import { FileForm } from "./upload_form.ts";
import { checkClaims, requireUser } from "./identity.ts";
import type { RouteDeps } from "./route_deps.ts";

const logger = getLogger(["chat", "http", "attach"]);

/** Room for multipart boundaries, part headers and small text fields. */
const MULTIPART_OVERHEAD = 16 * 1024;
/** Largest text field of an upload form (`userid`, the old `filetype`). */
const FIELD_MAX_BYTES = 1024;
/** Bytes of a file held in memory before it goes to disk; see {@linkcode UploadFile}. */
const HEAD_BYTES = 64 * 1024;
/** Shape of a server-chosen upload name. */
const NAME = /^[0-9a-f]{32}\.[a-z0-9]{2,4}$/;

/** Options for {@linkcode attachRoutes}. */
export interface AttachOptions {
  /** Folder the uploads are written to (`<dataDir>/mnt`); created on demand. */
  readonly uploadsDir: string;
  /**
   * The node's bound on uploads read at once (`main.ts` builds it from
   * `CHAT_UPLOAD_CONCURRENCY`). @default {a gate of DEFAULT_UPLOAD_CONCURRENCY}
   */
  readonly uploads?: UploadGate;
}

/** The upload and download routes. */
export function attachRoutes(deps: RouteDeps, options: AttachOptions): Hono {
  const { store, auth, config } = deps;
  const { uploadsDir } = options;
  const uploads = options.uploads ??
    new UploadGate({ concurrent: DEFAULT_UPLOAD_CONCURRENCY });
  const app = new Hono();

  app.post("/attach/upload", async (c) => {
    const req = c.req.raw;
    const type = req.headers.get("content-type");
    if (mediaType(type) !== "multipart/form-data") {
      await req.body?.cancel();
      throw new ClientError(
        "unsupported_type",
        'Upload must be multipart/form-data with a "file" field',
      );
    }
    // The login is checked before the body is read, so an upload without
    // one costs nothing: its token comes in the header, the cookie or the
    // query string, not in the multipart body.
    let userId: number;
    try {
      userId = await requireUser(auth, req, queryFields(req));
    } catch (e) {
      await req.body?.cancel();
      throw e;
    }
    const max = config.uploadMaxBytes;
    // A declared length past the limit, or no boundary, is answered now, not after a turn.
    const declared = Number(req.headers.get("content-length") ?? "0");
    let boundary: string;
    try {
      if (Number.isFinite(declared) && declared > max + MULTIPART_OVERHEAD) throw fileTooLarge(max);
      boundary = parseBoundary(type);
    } catch (e) {
      await req.body?.cancel();
      throw e;
    }
    let turn: UploadTurn;
    try {
      turn = await uploads.enter(userId, req.signal);
    } catch (e) {
      await req.body?.cancel();
      throw e;
    }
    try {
      const { name, mime, size } = await storeUpload(req, boundary, userId, turn);
      logger.info("User {userId} uploaded {name}", { userId, name, mime, size });
      return c.json(ok(`/mnt/${name}`, ""));
    } finally {
      turn.release();
    }
  });

  /**
   * Read, check and store one upload while it holds its turn. The body is
   * parsed as it arrives and the file's bytes go to disk as they come (past
   * the first {@linkcode HEAD_BYTES}), so an upload costs a few chunks of
   * memory, not its size.
   */
  async function storeUpload(
    req: Request,
    boundary: string,
    userId: number,
    turn: UploadTurn,
  ): Promise<{ name: string; mime: string; size: number }> {
    const max = config.uploadMaxBytes;
    const form = new FileForm(boundary, {
      maxFileBytes: max,
      maxFieldBytes: FIELD_MAX_BYTES,
    });
    const limits = deps.limits;
    // For refusing early while reading; the check that counts is the one after.
    const storedBefore = limits === undefined ? 0 : await store.attachmentBytes(userId);
    const file = new UploadFile(uploadsDir);
    try {
      let size = 0;
      for await (const chunk of uploadBody(req, max)) {
        for (const bytes of form.push(chunk)) {
          size += bytes.length;
          limits?.checkUploadQuota(storedBefore, size);
          await file.write(bytes);
        }
      }
      const { fields, fileBytes } = form.finish();
      checkClaims(userId, fields);
      if (fileBytes === 0) throw new ClientError("bad_request", "File is empty");
      // Noted before the store is asked, so a second upload of this user
      // checked meanwhile counts this one. Until this turn ends, a file it
      // recorded counts twice for the others: only ever too strict, by one file.
      const inFlight = turn.reserve(fileBytes);
      limits?.checkUploadQuota(await store.attachmentBytes(userId) + inFlight, fileBytes);
      const { name, kind } = await file.close();
      await store.recordAttachment({
        name,
        ownerId: userId,
        mime: kind.mime,
        size: fileBytes,
        createdAt: deps.now(),
      });
      return { name, mime: kind.mime, size: fileBytes };
    } catch (e) {
      // A half-written file, or one the store did not record, is no one's.
      await file.remove();
      throw e;
    }
  }

  /** The body's chunks within the size and time limits; too large is said of the file. */
  async function* uploadBody(req: Request, max: number): AsyncGenerator<Uint8Array> {
    try {
      yield* bodyChunks(req, { maxBytes: max + MULTIPART_OVERHEAD, timeoutMs: uploads.readMs });
    } catch (e) {
      if (e instanceof ClientError && e.code === "too_large") throw fileTooLarge(max);
      throw e;
    }
  }

  app.get("/mnt/:name", async (c) => {
    const name = c.req.param("name");
    const attachment = NAME.test(name) ? await store.findAttachment(name) : undefined;
    if (attachment === undefined) {
      throw new ClientError("not_found", "File not found");
    }
    const path = join(uploadsDir, name);
    // HEAD sends no body: a file opened for it stayed open until GC.
    let file: Deno.FsFile | undefined;
    let size: number;
    try {
      if (c.req.method === "HEAD") {
        size = (await Deno.stat(path)).size;
      } else {
        file = await Deno.open(path, { read: true });
        size = (await file.stat()).size;
      }
    } catch (e) {
      file?.close();
      if (e instanceof Deno.errors.NotFound) {
        throw new ClientError("not_found", "File not found");
      }
      throw e;
    }
    const headers: Record<string, string> = {
      "content-type": attachment.mime,
      "content-length": String(size),
      "accept-ranges": "bytes",
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'none'; sandbox",
      "cross-origin-resource-policy": "same-origin",
      "cache-control": "private, max-age=86400",
    };
    const range = file === undefined ? undefined : parseRange(c.req.header("range") ?? null, size);
    if (range === "unsatisfiable") {
      file?.close();
      headers["content-length"] = "0";
      headers["content-range"] = `bytes */${size}`;
      return new Response(null, { status: 416, headers });
    }
    if (file !== undefined && range !== undefined) {
      headers["content-length"] = String(range.end - range.start + 1);
      headers["content-range"] = `bytes ${range.start}-${range.end}/${size}`;
      return new Response(rangeStream(file, range), { status: 206, headers });
    }
    return new Response(file?.readable ?? null, { headers });
  });

  return app;
}

/** Bytes `start` to `end` of `file`, read as they are asked for; closes the file. */
function rangeStream(file: Deno.FsFile, { start, end }: ByteRange): ReadableStream<Uint8Array> {
  let left = end - start + 1;
  let open = true;
  const close = () => {
    if (open) file.close();
    open = false;
  };
  return new ReadableStream<Uint8Array>({
    async start() {
      try {
        await file.seek(start, Deno.SeekMode.Start);
      } catch (e) {
        close();
        throw e;
      }
    },
    async pull(controller) {
      try {
        const chunk = new Uint8Array(Math.min(left, 64 * 1024));
        const n = await file.read(chunk);
        // A file cut short meanwhile ends the body early; the length header was sent already.
        if (n === null || n === 0) {
          close();
          controller.close();
          return;
        }
        left -= n;
        controller.enqueue(chunk.subarray(0, n));
        if (left === 0) {
          close();
          controller.close();
        }
      } catch (e) {
        close();
        controller.error(e);
      }
    },
    cancel: close,
  });
}

/**
 * An upload's file on its way to disk. Its first {@linkcode HEAD_BYTES} are
 * held in memory, so a small upload refused by a later check (its closing
 * boundary, a claim, the quota) never touches the disk. Once they are
 * passed, or at `close`, the type is sniffed from the first bytes and the
 * file is created under its final name; `/mnt` serves it only once the
 * store has recorded it.
 */
class UploadFile {
  #dir: string;
  #head: Uint8Array = new Uint8Array(0);
  #held = 0;
  #out: Deno.FsFile | undefined;
  #path: string | undefined;
  #name = "";
  #kind: Sniffed | undefined;

  /** A file to be created in `dir`. */
  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Add the file's next bytes. Throws `unsupported_type` once its first bytes are known. */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#out === undefined && this.#held + bytes.length <= HEAD_BYTES) {
      // Copied into one buffer: a body trickled in tiny pieces costs its bytes, not a piece each.
      if (this.#head.length === 0) this.#head = new Uint8Array(HEAD_BYTES);
      this.#head.set(bytes, this.#held);
      this.#held += bytes.length;
      return;
    }
    const out = this.#out ?? await this.#open(bytes);
    await writeAll(out, bytes);
  }

  /** The whole file is in: it is written and closed; its name and type. */
  async close(): Promise<{ name: string; kind: Sniffed }> {
    const out = this.#out ?? await this.#open(new Uint8Array(0));
    this.#out = undefined;
    out.close();
    return { name: this.#name, kind: this.#kind! };
  }

  /** Close and remove what was written, if anything. Never throws. */
  async remove(): Promise<void> {
    try {
      this.#out?.close();
    } catch { /* closed already */ }
    this.#out = undefined;
    if (this.#path !== undefined) await Deno.remove(this.#path).catch(() => {});
    this.#path = undefined;
  }

  /** Sniff the held bytes (then `next`), create the file and write them. */
  async #open(next: Uint8Array): Promise<Deno.FsFile> {
    const held = this.#head.subarray(0, this.#held);
    const first = new Uint8Array(Math.min(SNIFF_BYTES, held.length + next.length));
    first.set(held.subarray(0, first.length));
    if (held.length < first.length) {
      first.set(next.subarray(0, first.length - held.length), held.length);
    }
    const kind = sniff(first);
    if (kind === undefined) {
      throw new ClientError(
        "unsupported_type",
        "File type not allowed: use png, jpeg, gif, webp, mp3, ogg, webm, mp4, m4a or wav",
      );
    }
    const name = `${randomHex(16)}.${kind.ext}`;
    const path = join(this.#dir, name);
    await Deno.mkdir(this.#dir, { recursive: true });
    // `#path` is set after: a name taken already is someone else's file, not ours to remove.
    const out = await Deno.open(path, { createNew: true, write: true, mode: 0o640 });
    this.#out = out;
    this.#path = path;
    this.#name = name;
    this.#kind = kind;
    await writeAll(out, held);
    this.#head = new Uint8Array(0);
    return out;
  }
}

function fileTooLarge(max: number): ClientError {
  return new ClientError("too_large", `File exceeds ${max} bytes`);
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}
