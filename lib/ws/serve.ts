/**
 * Serve the app on one port with the chat websocket on the front door
 * ({@linkcode FrontDoor}): `main.ts` and the tests start servers this way.
 *
 * @module
 */

import type { FetchHandler } from "../http/ops_routes.ts";
import { FrontDoor } from "./front_door.ts";
import { PeerAddresses } from "./proxy.ts";
import type { RawWebSocketOptions } from "./raw_socket.ts";

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  readonly hostname: string;
  readonly port: number;
  /** Aborting stops both servers (in-flight requests finish). */
  readonly signal: AbortSignal;
  /** The app; upgrade requests the front door answers get a `FrontDoorInfo`. */
  readonly fetch: FetchHandler;
  readonly socket?: RawWebSocketOptions;
}

/** A running server. */
export interface Served {
  /** Where it listens (the real port when 0 was asked). */
  readonly addr: Deno.NetAddr;
  /** Settles once both servers stopped after the abort. */
  readonly finished: Promise<void>;
}

/** Listen on `hostname:port`; throws as `Deno.listen` does (e.g. `AddrInUse`). */
export function serve(options: ServeOptions): Served {
  const { fetch, signal } = options;
  const listener = Deno.listen({ hostname: options.hostname, port: options.port });
  const peers = new PeerAddresses();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, signal, onListen() {} },
      (request, info) => fetch(request, { ...info, remoteAddr: peers.resolve(info.remoteAddr) }),
    );
  } catch (error) {
    listener.close();
    throw error;
  }
  const door = new FrontDoor({
    listener,
    upstream: server.addr,
    peers,
    fetch,
    ...(options.socket === undefined ? {} : { socket: options.socket }),
  });
  signal.addEventListener("abort", () => void door.close(), { once: true });
  return {
    addr: listener.addr as Deno.NetAddr,
    finished: server.finished.then(() => door.close()),
  };
}
