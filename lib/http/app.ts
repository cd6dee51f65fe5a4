/**
 * The HTTP application: request log, the REST routes of the original system,
 * uploads, pages, routes added by other layers, a JSON 404, and the one
 * error boundary that maps `ClientError` to an envelope with its status and
 * anything else to a logged 500.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { getLogger } from "@logtape/logtape";
import type { AbuseLimits } from "../abuse_limits.ts";
import type { UploadGate } from "../upload_gate.ts";
import type { Auth } from "../auth.ts";
import { ClientError, RetryLaterError } from "../errors.ts";
import { diskFullError, isDiskFull } from "../disk_full.ts";
import { DiskFullLog } from "../disk_full_log.ts";
import type { Store } from "../store.ts";
import { allowedMethods } from "./allowed_methods.ts";
import { attachRoutes } from "./attach_routes.ts";
import { contactRoutes } from "./contact_routes.ts";
import { fail } from "./envelope.ts";
import { pageRoutes } from "./pages.ts";
import type { HttpConfig, MembershipChange, RouteDeps } from "./route_deps.ts";
import { userRoutes } from "./user_routes.ts";

const logger = getLogger(["chat", "http"]);

/** Dependencies of {@linkcode createApp}. */
export interface AppDeps {
  readonly store: Store;
  readonly auth: Auth;
  readonly config: HttpConfig;
  /** Folder served under `/asset/`. */
  readonly staticDir: string;
  /** Page templates folder. */
  readonly templatesDir: string;
  /** Upload folder (`<dataDir>/mnt`). */
  readonly uploadsDir: string;
  /** Clock in epoch ms. @default {Date.now} */
  readonly now?: () => number;
  /** More routes (e.g. `/chat`, history), mounted before the 404 fallback. @default {[]} */
  readonly extraRoutes?: readonly Hono[];
  /** Told after a friendship or group membership is stored. */
  readonly onMembershipChange?: (change: MembershipChange) => void;
  /** Login throttling and the upload quota. @default {no limits} */
  readonly limits?: AbuseLimits;
  /** The bound on uploads read at once. @default {see `attachRoutes`} */
  readonly uploads?: UploadGate;
  /**
   * Where a write that met a full disk is logged: the node's one, shared with
   * the store's appends, so retries on every path log once per 10 s. @default {a new one}
   */
  readonly diskFullLog?: DiskFullLog;
}

/** Build the Hono app; `main.ts` passes `app.fetch` to `Deno.serve`. */
export function createApp(deps: AppDeps): Hono {
  const routeDeps: RouteDeps = {
    store: deps.store,
    auth: deps.auth,
    config: deps.config,
    now: deps.now ?? Date.now,
    ...(deps.onMembershipChange === undefined
      ? {}
      : { onMembershipChange: deps.onMembershipChange }),
    ...(deps.limits === undefined ? {} : { limits: deps.limits }),
  };
  const app = new Hono();
  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    c.res.headers.set("x-content-type-options", "nosniff");
    logger.info("{method} {path} {status} {ms}ms", {
      method: c.req.method,
      path: c.req.path,
      // The front door's upgrade answers 200 here and sends the 101 itself.
      status: c.res.headers.get("upgrade") === "websocket" ? 101 : c.res.status,
      ms: Math.round(performance.now() - started),
    });
  });
  app.route("/", userRoutes(routeDeps));
  app.route("/", contactRoutes(routeDeps));
  app.route(
    "/",
    attachRoutes(routeDeps, {
      uploadsDir: deps.uploadsDir,
      ...(deps.uploads === undefined ? {} : { uploads: deps.uploads }),
    }),
  );
  app.route("/", pageRoutes(deps));
  for (const extra of deps.extraRoutes ?? []) app.route("/", extra);
  let methodsOf: ((path: string) => string[]) | undefined;
  app.notFound((c) => {
    // The table is complete by the first miss: every route is added above.
    methodsOf ??= allowedMethods(app.routes);
    const allow = methodsOf(c.req.path);
    // A route of this method that passed (a missing static file) is a plain 404.
    if (allow.length === 0 || allow.includes(c.req.method)) {
      return c.json(fail("Not found"), 404);
    }
    c.header("allow", allow.join(", "));
    return c.json(
      fail(`Method ${c.req.method} is not allowed here: use ${allow.join(" or ")}`),
      405,
    );
  });
  const diskFullLog = deps.diskFullLog ?? new DiskFullLog();
  app.onError((err, c) => errorResponse(err, c, diskFullLog));
  return app;
}

/** The one error boundary of the HTTP layer. */
function errorResponse(err: Error, c: Context, diskFullLog: DiskFullLog): Response {
  if (err instanceof ClientError) {
    if (err instanceof RetryLaterError) c.header("retry-after", String(err.retryAfterSeconds));
    return c.json(fail(err.message), err.status as ContentfulStatusCode);
  }
  if (err instanceof HTTPException && err.status < 500) {
    return c.json(fail(err.message || "Request failed"), err.status);
  }
  if (isDiskFull(err)) {
    diskFullLog.report(err, `${c.req.method} ${c.req.path}`);
    const full = diskFullError(err);
    c.header("retry-after", String(full.retryAfterSeconds));
    return c.json(fail(full.message), full.status as ContentfulStatusCode);
  }
  logger.error("Unhandled error on {method} {path}", {
    method: c.req.method,
    path: c.req.path,
    error: err,
  });
  return c.json(fail("Internal error"), 500);
}
