/**
 * Pages and static files: `/` redirects to the login page, the original
 * `.shtml` paths render their template under `templates/` (the chat pages
 * redirect to the login page without a valid login cookie), `/asset/*`
 * serves `static/` (`static_files.ts`: no listing; dot segments and control
 * characters refused). Every page gets a fresh CSP nonce; scripts and styles come only
 * from this server.
 *
 * @module
 */

import { Hono } from "hono";
import { join } from "node:path";
import type { TokenVerifier } from "../auth.ts";
import { ClientError } from "../errors.ts";
import { tokenFromRequest } from "./identity.ts";
import { staticFiles } from "./static_files.ts";

/** Options for {@linkcode pageRoutes}. */
export interface PageOptions {
  /** Folder served under `/asset/`. */
  readonly staticDir: string;
  /** Folder holding `user/login.html` and other page templates. */
  readonly templatesDir: string;
  /**
   * Resolves the login cookie of pages that need a login; such a page
   * redirects to the login page without a valid one. Without `auth` no page
   * checks a login (and `{{userId}}` renders empty).
   */
  readonly auth?: TokenVerifier;
}

/** A page: its template (relative to the templates folder) and whether it needs a login. */
interface PageSpec {
  readonly file: string;
  readonly login: boolean;
}

/** The original system's page paths. */
const PAGES: Readonly<Record<string, PageSpec>> = {
  "/user/login.shtml": { file: "user/login.html", login: false },
  "/user/register.shtml": { file: "user/register.html", login: false },
  "/chat/index.shtml": { file: "chat/index.html", login: true },
  "/chat/createcom.shtml": { file: "chat/createcom.html", login: true },
};

/** Where a page that needs a login sends a visitor without one. */
const LOGIN_PAGE = "/user/login.shtml";

/** The page and static-file routes. */
export function pageRoutes(options: PageOptions): Hono {
  const app = new Hono();
  app.get("/", (c) => c.redirect("/user/login.shtml", 302));
  for (const [path, page] of Object.entries(PAGES)) {
    app.get(path, async (c) => {
      let userId = "";
      if (page.login && options.auth !== undefined) {
        const token = tokenFromRequest(c.req.raw);
        const id = token === undefined ? undefined : await options.auth.resolveToken(token);
        if (id === undefined) {
          return c.redirect(LOGIN_PAGE, 302);
        }
        userId = String(id);
      }
      const nonce = crypto.randomUUID().replaceAll("-", "");
      const html = renderTemplate(
        await readTemplate(join(options.templatesDir, page.file)),
        { nonce, userId },
      );
      return c.html(html, 200, pageHeaders(nonce));
    });
  }
  app.get("/asset/*", staticFiles(options.staticDir, "/asset"));
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
      "style-src 'self'",
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
