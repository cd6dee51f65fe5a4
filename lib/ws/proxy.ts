/**
 * Hands a client connection to the internal HTTP server: the bytes the front
 * door already read, then both directions piped until either side ends.
 * The internal server sees every request come from 127.0.0.1, so
 * {@linkcode PeerAddresses} remembers which client each upstream connection
 * carries, keyed by its local address and port, for the rate limits and logs.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { writeAll } from "../bytes.ts";

const logger = getLogger(["chat", "http"]);

/** The client behind each upstream connection, by the upstream side's local address. */
export class PeerAddresses {
  #byAddr = new Map<string, Deno.Addr>();

  /** `remoteAddr` as the internal server saw it, replaced by the client's if known. */
  resolve(remoteAddr: Deno.Addr): Deno.Addr {
    if (remoteAddr.transport !== "tcp") return remoteAddr;
    return this.#byAddr.get(`${remoteAddr.hostname}:${remoteAddr.port}`) ?? remoteAddr;
  }

  /** Upstream connections open now. */
  get size(): number {
    return this.#byAddr.size;
  }

  /** Remember `client` for the upstream connection from `local`. */
  note(local: Deno.NetAddr, client: Deno.Addr): void {
    this.#byAddr.set(`${local.hostname}:${local.port}`, client);
  }

  /** Forget the connection from `local`. */
  forget(local: Deno.NetAddr): void {
    this.#byAddr.delete(`${local.hostname}:${local.port}`);
  }
}

const PIPE_BYTES = 16 * 1024;

/**
 * Connect to `upstream`, send `head`, and pipe `client` both ways; resolves
 * when both directions ended. Never throws.
 */
export async function proxyTo(
  client: Deno.TcpConn,
  head: Uint8Array,
  upstream: Deno.NetAddr,
  peers: PeerAddresses,
): Promise<void> {
  let server: Deno.TcpConn;
  try {
    server = await Deno.connect({ hostname: upstream.hostname, port: upstream.port });
  } catch (error) {
    logger.error("Cannot reach the internal HTTP server: {error}", { error });
    closeQuietly(client);
    return;
  }
  // Both legs pass small writes on at once, as a direct connection would.
  server.setNoDelay(true);
  client.setNoDelay(true);
  const local = server.localAddr;
  peers.note(local, client.remoteAddr);
  try {
    await writeAll(server, head);
    await Promise.all([
      pipe(client, server, () => server.closeWrite()),
      pipe(server, client, () => closeQuietly(client)),
    ]);
  } catch {
    // Either side went away; both are closed below.
  } finally {
    peers.forget(local);
    closeQuietly(server);
    closeQuietly(client);
  }
}

/** Copy `from` to `to` until `from` ends (then `ended()`); a failure closes both. */
async function pipe(from: Deno.Conn, to: Deno.Conn, ended: () => unknown): Promise<void> {
  const buf = new Uint8Array(PIPE_BYTES);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      await writeAll(to, buf.subarray(0, n));
    }
    await ended();
  } catch {
    closeQuietly(from);
    closeQuietly(to);
  }
}

/** Close `conn`, ignoring that it may be closed already. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
