/**
 * Which methods a path is served with, from the app's route table: so a
 * request with the wrong method gets 405 and an `Allow` header instead of
 * the 404 an unknown path gets.
 *
 * @module
 */

/** A route as Hono lists it in `app.routes`. */
export interface RouteEntry {
  readonly method: string;
  readonly path: string;
}

/**
 * A lookup of the methods `routes` serve a path with, sorted; empty when
 * none does. Middleware (`ALL`) does not count; `GET` brings `HEAD`, as
 * Hono answers a `HEAD` with the `GET` handler. Patterns: `:name` is one
 * segment, a trailing `*` the rest (or nothing, as in Hono: `/asset/*`
 * matches `/asset`), any other `*` one segment.
 */
export function allowedMethods(routes: readonly RouteEntry[]): (path: string) => string[] {
  const compiled = routes.filter((r) => r.method !== "ALL")
    .map((r) => ({ method: r.method, pattern: patternOf(r.path) }));
  return (path) => {
    const allowed = new Set<string>();
    for (const { method, pattern } of compiled) {
      if (!pattern.test(path)) continue;
      allowed.add(method);
      if (method === "GET") allowed.add("HEAD");
    }
    return [...allowed].sort();
  };
}

function patternOf(path: string): RegExp {
  const parts = path.split("/");
  const last = parts.length - 1;
  const source = parts.map((part, i) => {
    if (part === "*") return i === last ? "(?:/.*)?" : "/[^/]+";
    const text = part.startsWith(":") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return i === 0 ? text : `/${text}`;
  }).join("");
  return new RegExp(`^${source}$`);
}
