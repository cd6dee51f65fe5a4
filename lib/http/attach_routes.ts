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
import { sniff, SNIFF_BYTES } from "../sniff.ts";
import { DEFAULT_UPLOAD_CONCURRENCY } from "../config.ts";
import { UploadGate, type UploadTurn } from "../upload_gate.ts";
import { mediaType, queryFields, readLimited } from "./body.ts";
import { type ByteRange, parseRange } from "./byte_range.ts";
import { ok } from "./envelope.ts";
import { checkClaims, requireUser } from "./identity.ts";
import type { RouteDeps } from "./route_deps.ts";

const logger = getLogger(["chat", "http", "attach"]);

/** Room for multipart boundaries, part headers and small text fields. */
const MULTIPART_OVERHEAD = 16 * 1024;
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
    // A declared length past the limit is answered now, not after a wait for a turn.
    const declared = Number(req.headers.get("content-length") ?? "0");
    if (Number.isFinite(declared) && declared > max + MULTIPART_OVERHEAD) {
      await req.body?.cancel();
      throw fileTooLarge(max);
    }
    let turn: UploadTurn;
    try {
      turn = await uploads.enter(userId, req.signal);
    } catch (e) {
      await req.body?.cancel();
      throw e;
    }
    try {
      const { name, mime, size } = await storeUpload(req, type ?? "", userId, turn);
      logger.info("User {userId} uploaded {name}", { userId, name, mime, size });
      return c.json(ok(`/mnt/${name}`, ""));
    } finally {
      turn.release();
    }
  });

  /**
   * Read, check and store one upload while it holds its turn. The body is
   * read in a helper of its own, so its bytes are garbage once the form is
   * parsed, and the file goes to disk as a stream, not a third copy.
   */
  async function storeUpload(
    req: Request,
    type: string,
    userId: number,
    turn: UploadTurn,
  ): Promise<{ name: string; mime: string; size: number }> {
    const max = config.uploadMaxBytes;
    const form = await readForm(req, type, max);
    const fields: Record<string, string> = Object.create(null);
    for (const [key, value] of form) {
      if (typeof value === "string" && !(key in fields)) fields[key] = value;
    }
    checkClaims(userId, fields);
    const file = form.get("file");
    if (file === null) {
      throw new ClientError("bad_request", 'Missing file field "file"');
    }
    if (typeof file === "string") {
      throw new ClientError("bad_request", 'Field "file" must be a file');
    }
    if (file.size === 0) throw new ClientError("bad_request", "File is empty");
    if (file.size > max) throw fileTooLarge(max);
    // Noted before the store is asked, so a second upload of this user
    // checked meanwhile counts this one. Until this turn ends, a file it
    // recorded counts twice for the others: only ever too strict, by one file.
    const inFlight = turn.reserve(file.size);
    deps.limits?.checkUploadQuota(await store.attachmentBytes(userId) + inFlight, file.size);
    const kind = sniff(new Uint8Array(await file.slice(0, SNIFF_BYTES).arrayBuffer()));
    if (kind === undefined) {
      throw new ClientError(
        "unsupported_type",
        "File type not allowed: use png, jpeg, gif, webp, mp3, ogg, webm, mp4, m4a or wav",
      );
    }
    const name = `${randomHex(16)}.${kind.ext}`;
    const path = join(uploadsDir, name);
    await Deno.mkdir(uploadsDir, { recursive: true });
    // Outside the try: a name taken already is someone else's file, not ours to remove.
    const out = await Deno.open(path, { createNew: true, write: true, mode: 0o640 });
    try {
      // Closes `out` when done or failed.
      await file.stream().pipeTo(out.writable);
      await store.recordAttachment({
        name,
        ownerId: userId,
        mime: kind.mime,
        size: file.size,
        createdAt: deps.now(),
      });
    } catch (e) {
      // A half-written file (disk full) or one the store did not record is no one's.
      await Deno.remove(path).catch(() => {});
      throw e;
    }
    return { name, mime: kind.mime, size: file.size };
  }

  /** The parsed multipart body, read within the size and time limits. */
  async function readForm(req: Request, type: string, max: number): Promise<FormData> {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = await readLimited(req, {
        maxBytes: max + MULTIPART_OVERHEAD,
        timeoutMs: uploads.readMs,
      });
    } catch (e) {
      if (e instanceof ClientError && e.code === "too_large") throw fileTooLarge(max);
      throw e;
    }
    return await parseMultipart(bytes, type);
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

async function parseMultipart(
  bytes: Uint8Array<ArrayBuffer>,
  contentType: string,
): Promise<FormData> {
  try {
    return await new Response(bytes, {
      headers: { "content-type": contentType },
    }).formData();
  } catch {
    throw new ClientError("bad_request", "Malformed multipart body");
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
