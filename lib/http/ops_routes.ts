/**
 * Operations endpoints: `/healthz` (the process answers), `/readyz` (the
 * store and the bus answer and the node is not draining), `/metrics`
 * (Prometheus text format), and {@linkcode drainGate}, which refuses new
 * websocket upgrades while the node drains.
 *
 * @module
 */

import { Hono } from "hono";
import { getLogger } from "@logtape/logtape";
import type { DrainState } from "../drain.ts";
import { METRICS_CONTENT_TYPE, type Registry } from "../metrics.ts";

const logger = getLogger(["chat", "ops"]);

/** One dependency `/readyz` checks: `check` rejects when it is not usable. */
export interface ReadinessCheck {
  /** Shown in the `/readyz` body, e.g. "store". */
  readonly name: string;
  /** Resolves when the dependency answers. */
  check(): Promise<void>;
}

/** Dependencies of {@linkcode opsRoutes}. */
export interface OpsDeps {
  readonly drain: Pick<DrainState, "draining">;
  /** What `/readyz` checks, in order. @default {[]} */
  readonly checks?: readonly ReadinessCheck[];
  /** Serves `/metrics` when given. @default {undefined} */
  readonly registry?: Pick<Registry, "render">;
  /** A check slower than this fails. @default {2000} */
  readonly checkTimeoutMs?: number;
}

/** The Hono sub-app with `/healthz`, `/readyz` and (with a registry) `/metrics`. */
export function opsRoutes(deps: OpsDeps): Hono {
  const app = new Hono();
  const timeoutMs = deps.checkTimeoutMs ?? 2000;
  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/readyz", async (c) => {
    if (deps.drain.draining) return c.text("draining\n", 503);
    const failed: string[] = [];
    for (const { name, check } of deps.checks ?? []) {
      try {
        await withTimeout(check(), timeoutMs);
      } catch (error) {
        logger.warn("Readiness check {name} failed: {error}", { name, error });
        failed.push(name);
      }
    }
    if (failed.length > 0) return c.text(`not ready: ${failed.join(", ")}\n`, 503);
    return c.text("ready\n");
  });
  const registry = deps.registry;
  if (registry !== undefined) {
    app.get(
      "/metrics",
      (c) => c.body(registry.render(), 200, { "content-type": METRICS_CONTENT_TYPE }),
    );
  }
  return app;
}

/** A fetch handler, as `Deno.serve` takes it. */
export type FetchHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo,
) => Response | Promise<Response>;

/**
 * `handler`, except that while `drain` is draining a websocket upgrade is
 * answered 503 with `Retry-After: 1` (nginx then tries the next node).
 */
export function drainGate(
  handler: FetchHandler,
  drain: Pick<DrainState, "draining">,
): FetchHandler {
  return function gated(request, info) {
    if (drain.draining && request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      const body = JSON.stringify({ code: -1, msg: "Server is draining, reconnect elsewhere" });
      return new Response(body, {
        status: 503,
        headers: { "content-type": "application/json", "retry-after": "1", connection: "close" },
      });
    }
    return handler(request, info);
  };
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`No answer in ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
