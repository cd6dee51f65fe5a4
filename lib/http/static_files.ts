/**
 * Static files under a folder, through Hono's generic `serveStatic` with
 * this server's own file access: a path with a control character is refused
 * before the file system sees it (Deno throws a `TypeError` for a NUL, which
 * Hono's Deno adapter printed with `console.warn`), the directory check does
 * not block the event loop (the adapter used `lstatSync`), and an unexpected
 * file error goes to the logs, and a HEAD request stats the file instead
 * of opening it. Every refusal is a 404; Hono's middleware
 * still refuses dot segments, doubled slashes and backslashes.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { MiddlewareHandler } from "hono";
import { serveStatic } from "hono/serve-static";
import { getMimeType } from "hono/utils/mime";
import { join } from "node:path";

const logger = getLogger(["chat", "http", "static"]);

/** Whether `path` may name a file: no C0 control character and no DEL. Pure. */
export function servablePath(path: string): boolean {
  // deno-lint-ignore no-control-regex
  return !/[\u0000-\u001f\u007f]/.test(path);
}

/** Serve the files under `root` for request paths that start with `prefix`. */
export function staticFiles(root: string, prefix: string): MiddlewareHandler {
  return serveStatic({
    root,
    join,
    rewriteRequestPath: (path) => path.startsWith(prefix) ? path.slice(prefix.length) : path,
    isDir: async (path) =>
      servablePath(path) && (await statOrUndefined(path))?.isDirectory === true,
    getContent: async (path, c) => {
      if (!servablePath(path)) return null;
      // HEAD sends no body, and a file opened for it stayed open until GC.
      if (c.req.method === "HEAD") return await headResponse(path);
      try {
        const file = await Deno.open(path, { read: true });
        return file.readable;
      } catch (e) {
        if (!quietMiss(e)) {
          logger.warn("Static file {path} not served: {error}", { path, error: e });
        }
        return null;
      }
    },
  });
}

/** The headers a GET of the file at `path` would get, without opening it; null if none. */
async function headResponse(path: string): Promise<Response | null> {
  const info = await statOrUndefined(path);
  if (info === undefined || !info.isFile) return null;
  return new Response(null, {
    headers: {
      "content-type": getMimeType(path) ?? "application/octet-stream",
      "content-length": String(info.size),
    },
  });
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (!quietMiss(e)) logger.warn("Static file {path} not read: {error}", { path, error: e });
    return undefined;
  }
}

/** A file that is simply not there (or a path through a file) is an ordinary 404. */
function quietMiss(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory;
}
