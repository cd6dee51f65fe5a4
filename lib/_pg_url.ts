/**
 * Where a `postgres://` URL connects: its `?host=` when given (as libpq and
 * `pg` read it), else the URL's host; port 5432 unless given. Pure; shared by
 * the connection settings and the permission check, so both name one host.
 *
 * @module
 */

/** The host and port `url` connects to. */
export function pgAddress(url: string): { host: string; port: number } {
  const u = new URL(url);
  return {
    host: u.searchParams.get("host") ?? (u.hostname.replace(/^\[(.*)\]$/, "$1") || "localhost"),
    port: u.port === "" ? 5432 : Number(u.port),
  };
}
