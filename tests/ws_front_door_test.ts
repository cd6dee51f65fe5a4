import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { FrontDoor, type FrontDoorInfo } from "../lib/ws/front_door.ts";
import { PeerAddresses } from "../lib/ws/proxy.ts";
import { serve } from "../lib/ws/serve.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Everything a raw client reads until the server closes (or `untilText` shows up). */
async function readAll(conn: Deno.Conn, untilText?: string): Promise<string> {
  const buf = new Uint8Array(64 * 1024);
  let text = "";
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) return text;
    text += dec.decode(buf.subarray(0, n));
    if (untilText !== undefined && text.includes(untilText)) return text;
  }
}

/** A test app: echoes what it saw, upgrades websockets on either engine. */
function app(request: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response> {
  const url = new URL(request.url);
  const raw = (info as Partial<FrontDoorInfo>).upgradeWebSocket;
  if (url.pathname === "/refuse") {
    return Response.json({ code: -1, msg: "no" }, { status: 401, headers: { "x-why": "test" } });
  }
  if (request.headers.get("upgrade") === "websocket") {
    if (url.searchParams.has("refuse")) return Response.json({ msg: "refused" }, { status: 403 });
    if (raw !== undefined) {
      const { socket, response } = raw(request);
      socket.bind({
        opened: () => socket.send("raw open"),
        message: (data) => socket.send(`raw:${String(data)}`),
        closed: () => {},
      });
      return response;
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (e) => socket.send(`deno:${e.data}`);
    return response;
  }
  return (async () => {
    const body = await request.text();
    const addr = info.remoteAddr as Deno.NetAddr;
    return Response.json({ method: request.method, path: url.pathname, body, port: addr.port });
  })();
}

function start() {
  const ac = new AbortController();
  const server = serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, fetch: app });
  return {
    port: server.addr.port,
    async [Symbol.asyncDispose]() {
      ac.abort();
      await server.finished;
    },
  };
}

Deno.test("the front door hands plain HTTP to the server, keep-alive and bodies included, with the client's address", async () => {
  await using s = start();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  const myPort = (conn.localAddr as Deno.NetAddr).port;
  await conn.write(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  const first = await readAll(conn, "}");
  await conn.write(enc.encode("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
  const second = await readAll(conn, "}");
  conn.close();
  match(first, /^HTTP\/1.1 200/);
  deepStrictEqual(JSON.parse(first.slice(first.indexOf("{"))), {
    method: "GET",
    path: "/a",
    body: "",
    port: myPort,
  });
  deepStrictEqual(JSON.parse(second.slice(second.indexOf("{"))), {
    method: "POST",
    path: "/b",
    body: "hello",
    port: myPort,
  });
  const viaFetch = await (await fetch(`http://127.0.0.1:${s.port}/c`, {
    method: "PUT",
    body: "x".repeat(300_000),
  })).json();
  deepStrictEqual([viaFetch.method, viaFetch.body.length], ["PUT", 300_000]);
});

Deno.test("a /chat upgrade opens the front door's websocket; one elsewhere gets Deno's", async () => {
  await using s = start();
  const talk = async (path: string) => {
    const ws = new WebSocket(`ws://127.0.0.1:${s.port}${path}`);
    const got: string[] = [];
    const done = Promise.withResolvers<void>();
    ws.onmessage = (e) => {
      got.push(String(e.data));
      if (got.length === 1 && path === "/other") done.resolve();
      if (got.length === 2) done.resolve();
    };
    ws.onopen = () => ws.send("hi");
    await done.promise;
    const closed = new Promise((r) => ws.onclose = (e) => r(e.code));
    ws.close(1000);
    strictEqual(await closed, 1000);
    return got;
  };
  deepStrictEqual(await talk("/chat?x=1"), ["raw open", "raw:hi"]);
  deepStrictEqual(await talk("/other"), ["deno:hi"]);
});

Deno.test("a /chat upgrade the handler refuses gets its status, headers and body, then the connection closes", async () => {
  await using s = start();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  await conn.write(enc.encode(
    "GET /chat?refuse=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
  ));
  const answer = await readAll(conn);
  conn.close();
  match(answer, /^HTTP\/1.1 403 Forbidden\r\n/);
  match(answer, /connection: close\r\n/);
  ok(answer.endsWith('{"msg":"refused"}'), answer);
});

Deno.test("the front door closes a connection whose request head does not arrive in time", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const door = new FrontDoor({
    listener,
    upstream: { transport: "tcp", hostname: "127.0.0.1", port: 9 },
    peers: new PeerAddresses(),
    fetch: () => new Response("unused"),
    headTimeoutMs: 100,
  });
  try {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: (listener.addr as Deno.NetAddr).port,
    });
    await conn.write(enc.encode("GET /chat HTTP/1.1\r\nHost: x\r\n")); // and nothing more
    const started = Date.now();
    strictEqual(await readAll(conn), "");
    ok(Date.now() - started < 5000);
    conn.close();
  } finally {
    await door.close();
  }
});

Deno.test("a request head over 16 KiB, or an odd one, goes on to the HTTP server", async () => {
  await using s = start();
  for (
    const head of [
      `GET /chat HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(17_000)}\r\n\r\n`,
      "GET /chat HTTP/1.1\r\nHost: x\r\n folded: line\r\n\r\n",
      "GET /chat HTTP/1.0\r\nHost: x\r\n\r\n",
    ]
  ) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await conn.write(enc.encode(head));
    const answer = await readAll(conn, "\r\n\r\n");
    conn.close();
    match(answer, /^HTTP\/1.[01] [2-5]\d\d /, head.slice(0, 40));
  }
});

Deno.test("the client address of a proxied connection is forgotten when it closes", async () => {
  const ac = new AbortController();
  const peers = new PeerAddresses();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    (request, info) => app(request, { ...info, remoteAddr: peers.resolve(info.remoteAddr) }),
  );
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const door = new FrontDoor({ listener, upstream: server.addr, peers, fetch: app });
  try {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: (listener.addr as Deno.NetAddr).port,
    });
    await conn.write(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
    await readAll(conn, "}");
    strictEqual(peers.size, 1, "mapped while open");
    conn.close();
    for (let i = 0; i < 100 && peers.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
    strictEqual(peers.size, 0);
  } finally {
    await door.close();
    ac.abort();
    await server.finished;
  }
});
