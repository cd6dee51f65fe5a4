/**
 * Pages and static files: `/` redirects to the login page, `/user/login.shtml`
 * renders `templates/user/login.html`, `/asset/*` serves `static/` through
 * Hono's `serveStatic` (no listing; dot segments refused).
 *
 * @module
 */

import { Hono } from "hono";
import { serveStatic } from "hono/deno";
import { join } from "node:path";
import { ClientError } from "../errors.ts";

/** Options for {@linkcode pageRoutes}. */
export interface PageOptions {
  /** Folder served under `/asset/`. */
  readonly staticDir: string;
  /** Folder holding `user/login.html` and other page templates. */
  readonly templatesDir: string;
}

/** Pages routed to their template file (relative to the templates folder). */
const PAGES: Readonly<Record<string, string>> = {
  "/user/login.shtml": "user/login.html",
};

/** The page and static-file routes. */
export function pageRoutes(options: PageOptions): Hono {
  const app = new Hono();
  app.get("/", (c) => c.redirect("/user/login.shtml", 302));
  for (const [path, file] of Object.entries(PAGES)) {
    app.get(path, async (c) => {
      const nonce = crypto.randomUUID().replaceAll("-", "");
      const html = renderTemplate(
        await readTemplate(join(options.templatesDir, file)),
        { nonce },
      );
      return c.html(html, 200, pageHeaders(nonce));
    });
  }
  app.get(
    "/asset/*",
    serveStatic({
      root: options.staticDir,
      rewriteRequestPath: (path) => path.replace(/^\/asset/, ""),
    }),
  );
  return app;
}

/**
 * Replace each `{{name}}` in `template` with the HTML-escaped value of
 * `vars[name]`; unknown names become empty. Pure.
 */
export function renderTemplate(
  template: string,
  vars: Readonly<Record<string, string>>,
): string {
  return template.replace(
    /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g,
    (_, name: string) => escapeHtml(vars[name] ?? ""),
  );
}

/** Escape `& < > " '` for HTML text and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** Security headers of a rendered page whose inline scripts carry `nonce`. */
export function pageHeaders(nonce: string): Record<string, string> {
  return {
    "content-security-policy": [
      "default-src 'self'",
      `script-src 'self' 'nonce-${nonce}'`,
      "style-src 'self' 'unsafe-inline'",
      "img-src 'self' data: blob:",
      "media-src 'self' blob:",
      "connect-src 'self'",
      "object-src 'none'",
      "base-uri 'none'",
      "frame-ancestors 'none'",
      "form-action 'self'",
    ].join("; "),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
  };
}

async function readTemplate(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ClientError("not_found", "Page not found");
    }
    throw e;
  }
}
