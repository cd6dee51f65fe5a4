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
 * The methods `routes` serve `path` with, sorted; empty when none does.
 * Middleware (`ALL`) does not count; `GET` brings `HEAD`, as Hono answers
 * a `HEAD` with the `GET` handler. Patterns: `:name` one segment, `*` the rest.
 */
export function allowedMethods(routes: readonly RouteEntry[], path: string): string[] {
  const allowed = new Set<string>();
  for (const route of routes) {
    if (route.method === "ALL" || !patternOf(route.path).test(path)) continue;
    allowed.add(route.method);
    if (route.method === "GET") allowed.add("HEAD");
  }
  return [...allowed].sort();
}

function patternOf(path: string): RegExp {
  const source = path.split("/").map((part) =>
    part === "*"
      ? ".*"
      : part.startsWith(":")
      ? "[^/]+"
      : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  ).join("/");
  return new RegExp(`^${source}$`);
}
