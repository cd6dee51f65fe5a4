import { serve } from "../lib/ws/serve.ts";
import assert from "node:assert/strict";
import { LocalBus } from "../lib/bus_local.ts";
import { ChatService } from "../lib/chat_service.ts";
import { CLOSE } from "../lib/close_codes.ts";
import { createApp } from "../lib/http/app.ts";
import { chatRoutes } from "../lib/http/chat_route.ts";
import { makeTestApp, TEMPLATES_DIR, TEST_CONFIG } from "./_http_helpers.ts";
import { delay, startChatServer, TestSocket } from "./_chat_helpers.ts";
import { rawHandshake } from "./_raw_ws.ts";

type Frame = Record<string, unknown>;
const isMsg = (f: Frame) => f["cmd"] === 10 || f["cmd"] === 11;
const isAck = (cid: string) => (f: Frame) => f["cmd"] === 20 && f["cid"] === cid;
const isErr = (f: Frame) => f["cmd"] === 21;

Deno.test("/chat stamps the sender: a spoofed userid is overwritten", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  const a = await srv.connect(ann);
  const b = await srv.connect(bob);
  a.send({ cmd: 10, userid: bob.id, id: 777, dstid: bob.id, media: 1, content: "hi", cid: "m1" });
  const [ack] = await a.waitFor(isAck("m1"));
  assert.equal(ack?.["seq"], 1);
  assert.equal(ack?.["dup"], false);
  const [got] = await b.waitFor(isMsg);
  assert.equal(got?.["userid"], ann.id);
  assert.equal(got?.["dstid"], bob.id);
  assert.equal(got?.["content"], "hi");
  assert.equal(got?.["seq"], 1);
  assert.equal(got?.["conv"], `u:${Math.min(ann.id, bob.id)}:${Math.max(ann.id, bob.id)}`);
  assert.notEqual(got?.["id"], 777);
  assert.equal(typeof got?.["ts"], "number");
});

Deno.test("/chat refuses 1:1 to a non-friend and group posts from non-members, naming the reason", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const cat = await srv.user("cat");
  const group = await srv.store.createGroup(
    { name: "g", ownerId: cat.id, icon: "", cate: 0, memo: "" },
    { now: 0, maxPerOwner: 5 },
  );
  const a = await srv.connect(ann);
  const c = await srv.connect(cat);
  a.send({ cmd: 10, dstid: cat.id, media: 1, content: "psst", cid: "x1" });
  a.send({ cmd: 11, dstid: group.id, media: 1, content: "hey", cid: "x2" });
  a.send({ cmd: 10, dstid: ann.id, media: 1, content: "me", cid: "x3" });
  const errs = await a.waitFor(isErr, 3);
  assert.deepStrictEqual(errs, [
    {
      cmd: 21,
      code: "forbidden",
      msg: `User ${cat.id} is not your friend`,
      retryable: false,
      cid: "x1",
    },
    {
      cmd: 21,
      code: "forbidden",
      msg: `You are not a member of group ${group.id}`,
      retryable: false,
      cid: "x2",
    },
    {
      cmd: 21,
      code: "bad_request",
      msg: "Cannot send a message to yourself",
      retryable: false,
      cid: "x3",
    },
  ]);
  // Nothing was stored or delivered, and the socket is still open.
  assert.deepStrictEqual(await srv.store.lastSeqs(ann.id), new Map());
  a.send({ cmd: 0 });
  await a.waitFor((f) => f["cmd"] === 0);
  assert.equal(c.frames.filter(isMsg).length, 0);
});

Deno.test("/chat lets strangers talk when allowStrangers is on", async () => {
  await using srv = await startChatServer({ allowStrangers: true });
  const ann = await srv.user("ann");
  const cat = await srv.user("cat");
  const a = await srv.connect(ann);
  const c = await srv.connect(cat);
  a.send({ cmd: 10, dstid: cat.id, media: 1, content: "hello", cid: "s1" });
  await a.waitFor(isAck("s1"));
  await c.waitFor(isMsg);
  a.send({ cmd: 10, dstid: 99999, media: 1, content: "void", cid: "s2" });
  const [err] = await a.waitFor(isErr);
  assert.equal(err?.["code"], "not_found");
});

Deno.test("/chat acks with cid and seq; a retried cid gets the same seq and is delivered once", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  const a = await srv.connect(ann);
  const b = await srv.connect(bob);
  const frame = { cmd: 10, dstid: bob.id, media: 1, content: "once", cid: "dup-1" };
  a.send(frame);
  a.send(frame);
  a.send({ ...frame, cid: "dup-2", content: "twice" });
  const acks = await a.waitFor((f) => f["cmd"] === 20, 3);
  assert.deepStrictEqual(acks.map((f) => [f["cid"], f["seq"], f["dup"]]), [
    ["dup-1", 1, false],
    ["dup-1", 1, true],
    ["dup-2", 2, false],
  ]);
  await b.waitFor(isMsg, 2);
  await delay(50);
  assert.deepStrictEqual(b.frames.filter(isMsg).map((f) => f["content"]), ["once", "twice"]);
  // The sender's own session got acks only, no echo.
  assert.equal(a.frames.filter(isMsg).length, 0);
});

Deno.test("/chat refuses a cid reused for another conversation (409), instead of acking the first message and dropping the new one", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  const cy = await srv.user("cy");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  await srv.store.addFriendship(ann.id, cy.id, 0);
  const a = await srv.connect(ann);
  const b = await srv.connect(bob);
  const c = await srv.connect(cy);
  a.send({ cmd: 10, dstid: bob.id, media: 1, content: "to Bob", cid: "same" });
  await a.waitFor((f) => f["cmd"] === 20);
  a.send({ cmd: 10, dstid: cy.id, media: 1, content: "to Cy", cid: "same" });
  const [refused] = await a.waitFor((f) => f["cmd"] === 21);
  assert.deepStrictEqual(
    [refused!["code"], refused!["cid"], refused!["retryable"]],
    ["conflict", "same", false],
  );
  assert.match(String(refused!["msg"]), /used for another conversation; send with a new cid/);
  // A new cid goes through; Bob got his message once, Cy only the resent one.
  a.send({ cmd: 10, dstid: cy.id, media: 1, content: "to Cy", cid: "fresh" });
  await c.waitFor(isMsg);
  await delay(50);
  assert.deepStrictEqual(b.frames.filter(isMsg).map((f) => f["content"]), ["to Bob"]);
  assert.deepStrictEqual(c.frames.filter(isMsg).map((f) => f["content"]), ["to Cy"]);
  assert.equal(a.frames.filter((f) => f["cmd"] === 20).length, 2);
});

Deno.test("/chat announces a retried cid's seq: a message stored by a node that died before publishing reaches the peer live", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  const b = await srv.connect(bob);
  // What a node killed between its store write and its publish leaves behind.
  const frame = { cmd: 10, dstid: bob.id, media: 1, content: "orphan", cid: "killed-1" };
  await srv.store.appendMessage({
    userid: ann.id,
    pic: "",
    url: "",
    memo: "",
    amount: 0,
    ...frame,
  }, Date.now());
  const a = await srv.connect(ann);
  a.send(frame); // the client's resend after reconnecting elsewhere
  const [ack] = await a.waitFor((f) => f["cmd"] === 20);
  assert.deepStrictEqual([ack?.["seq"], ack?.["dup"]], [1, true]);
  const [msg] = await b.waitFor(isMsg);
  assert.deepStrictEqual([msg?.["content"], msg?.["seq"]], ["orphan", 1]);
  a.send(frame); // and again: bob already has seq 1, so nothing more reaches him
  await a.waitFor((f) => f["cmd"] === 20, 2);
  await delay(50);
  assert.equal(b.frames.filter(isMsg).length, 1);
});

Deno.test("/chat fans a group message out to members, not back to the sending tab", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  const cat = await srv.user("cat");
  const g = await srv.store.createGroup(
    { name: "g", ownerId: ann.id, icon: "", cate: 0, memo: "" },
    { now: 0, maxPerOwner: 5 },
  );
  await srv.store.joinGroup(bob.id, g.id, 0);
  const a1 = await srv.connect(ann);
  const a2 = await srv.connect(ann); // a second tab evicts nobody
  const b = await srv.connect(bob);
  const c = await srv.connect(cat);
  a1.send({ cmd: 11, dstid: g.id, media: 1, content: "all", cid: "g1" });
  await a1.waitFor(isAck("g1"));
  const [onTab2] = await a2.waitFor(isMsg);
  const [onBob] = await b.waitFor(isMsg);
  assert.equal(onTab2?.["content"], "all");
  assert.equal(onBob?.["userid"], ann.id);
  // Cat joins while connected: the next message reaches her at once.
  await srv.store.joinGroup(cat.id, g.id, 0);
  srv.chat.memberJoined(g.id, cat.id);
  b.send({ cmd: 11, dstid: g.id, media: 1, content: "welcome", cid: "g2" });
  const [onCat] = await c.waitFor(isMsg);
  assert.equal(onCat?.["content"], "welcome");
  assert.equal(onCat?.["seq"], 2);
  await a1.waitFor(isMsg);
  await delay(30);
  assert.equal(a1.frames.filter(isMsg).length, 1, "the sending tab got no echo");
  assert.equal(c.frames.filter(isMsg).length, 1);
});

Deno.test("/chat answers junk with an error frame and keeps the socket open", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const a = await srv.connect(ann);
  a.send("hello,world!");
  a.send({ cmd: 10, dstid: 2, media: 55, content: "x", cid: "j" });
  a.send({ cmd: 0 });
  await a.waitFor((f) => f["cmd"] === 0);
  const errs = a.frames.filter(isErr);
  assert.equal(errs.length, 2);
  assert.match(String(errs[0]?.["msg"]), /not valid JSON/);
  assert.match(String(errs[1]?.["msg"]), /media/);
  assert.equal(a.ws.readyState, WebSocket.OPEN);
});

Deno.test("/chat answers heartbeats and closes an idle socket with 4001", async () => {
  await using srv = await startChatServer({ session: { idleTimeoutMs: 300 } });
  const ann = await srv.user("ann");
  const a = await srv.connect(ann);
  for (let i = 0; i < 3; i++) {
    await delay(150);
    a.send({ cmd: 0 });
  }
  assert.equal(a.frames.length >= 2, true);
  assert.equal(a.ws.readyState, WebSocket.OPEN, "heartbeats keep it open past the timeout");
  assert.equal(await a.closed, CLOSE.idleTimeout.code);
  await delay(10);
  assert.equal(srv.chat.stats().sessions, 0);
});

Deno.test("/chat refuses a bad login, Origin or handshake with 401/403/400 before the upgrade", async (t) => {
  await using srv = await startChatServer({ origins: ["http://good.example"] });
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  const cases: { name: string; path: string; headers?: Record<string, string>; want: number }[] = [
    { name: "no token", path: "/chat?id=1", want: 401 },
    { name: "the seed's empty token for a missing user", path: "/chat?id=0&token=", want: 401 },
    { name: "a made-up token", path: `/chat?id=${ann.id}&token=nope`, want: 401 },
    { name: "id of another user", path: `/chat?id=${bob.id}&token=${ann.token}`, want: 403 },
    {
      name: "a second websocket version (not 13 alone)",
      path: `/chat?id=${ann.id}&token=${ann.token}`,
      headers: { "Sec-WebSocket-Version": "8" },
      want: 400,
    },
    {
      name: "a foreign Origin",
      path: `/chat?id=${ann.id}&token=${ann.token}`,
      headers: { Origin: "http://evil.example" },
      want: 403,
    },
    {
      name: "an allowed Origin",
      path: `/chat?id=${ann.id}&token=${ann.token}`,
      headers: { Origin: "http://good.example" },
      want: 101,
    },
    {
      name: "token in the cookie, none in the URL",
      path: "/chat",
      headers: { Cookie: `lanchat_token=${ann.token}` },
      want: 101,
    },
    {
      name: "Bearer token",
      path: "/chat",
      headers: { Authorization: `Bearer ${ann.token}` },
      want: 101,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const { conn, status } = await rawHandshake(srv.port, c.path, c.headers);
      conn.close();
      assert.equal(status, c.want);
    });
  }
  await t.step("a revoked token", async () => {
    await srv.auth.revokeToken(bob.token);
    const { conn, status } = await rawHandshake(srv.port, `/chat?token=${bob.token}`);
    conn.close();
    assert.equal(status, 401);
  });
  await delay(20);
});

Deno.test("/chat with an empty Origin list allows only the same origin", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const path = `/chat?token=${ann.token}`;
  const same = await rawHandshake(srv.port, path, { Origin: `http://127.0.0.1:${srv.port}` });
  same.conn.close();
  const other = await rawHandshake(srv.port, path, { Origin: "http://127.0.0.1:1" });
  other.conn.close();
  assert.deepStrictEqual([same.status, other.status], [101, 403]);
  await delay(20);
});

Deno.test("/chat takes the token from the lanchat_token cookie", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const s = new TestSocket(srv.url(""), { headers: { Cookie: `lanchat_token=${ann.token}` } });
  await s.opened;
  s.send({ cmd: 0 });
  await s.waitFor((f) => f["cmd"] === 0);
  await s.close();
});

Deno.test("History pages a conversation by seq over REST and over the socket", async () => {
  await using srv = await startChatServer();
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  const cat = await srv.user("cat");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  const a = await srv.connect(ann);
  for (let i = 1; i <= 5; i++) {
    a.send({ cmd: 10, dstid: bob.id, media: 1, content: `m${i}`, cid: `h${i}` });
  }
  await a.waitFor((f) => f["cmd"] === 20, 5);
  const get = (query: string, token: string) =>
    fetch(`http://127.0.0.1:${srv.port}/message/history?${query}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
  const page = await get(`peer=${ann.id}&before=5&limit=2`, bob.token);
  assert.equal(page.status, 200);
  const body = await page.json();
  assert.equal(body.code, 0);
  assert.deepStrictEqual(body.rows.map((r: Frame) => r["seq"]), [3, 4]);
  assert.equal(body.total, 2);
  const conv = String(body.rows[0]["conv"]);
  const after = await (await get(`conv=${conv}&after=3`, ann.token)).json();
  assert.deepStrictEqual(after.rows.map((r: Frame) => r["content"]), ["m4", "m5"]);
  const stranger = await get(`conv=${conv}`, cat.token);
  assert.equal(stranger.status, 403);
  assert.deepStrictEqual(await stranger.json(), { code: -1, msg: "Not your conversation" });
  const anon = await fetch(`http://127.0.0.1:${srv.port}/message/history?conv=${conv}`);
  assert.equal(anon.status, 401);
  await anon.body?.cancel();
  const bad = await get("conv=nope", ann.token);
  assert.equal(bad.status, 400);
  await bad.body?.cancel();
  // An old client's userid is checked against the token, as on every route.
  const other = await get(`peer=${bob.id}&userid=${bob.id}`, ann.token);
  assert.equal(other.status, 403);
  assert.deepStrictEqual(await other.json(), {
    code: -1,
    msg: 'Field "userid" does not match the logged-in user',
  });
  const own = await get(`peer=${bob.id}&userid=${ann.id}`, ann.token);
  assert.equal(own.status, 200);
  await own.body?.cancel();
  const both = await get(`peer=${bob.id}&group=1`, ann.token);
  assert.equal(both.status, 400);
  assert.deepStrictEqual(await both.json(), { code: -1, msg: "Give one of conv, peer or group" });
  a.send({ cmd: 32, conv, limit: 2, rid: "r1" });
  const [hist] = await a.waitFor((f) => f["cmd"] === 33);
  assert.equal(hist?.["rid"], "r1");
  assert.deepStrictEqual((hist?.["rows"] as Frame[]).map((r) => r["seq"]), [4, 5]);
  a.send({ cmd: 32, conv: `g:12345`, rid: "r2" });
  const [err] = await a.waitFor(isErr);
  assert.equal(err?.["code"], "forbidden");
});

Deno.test("/chat works when mounted in the full app through extraRoutes", async () => {
  const bus = new LocalBus();
  await using t = await makeTestApp({ store: "sqlite" });
  const chat = new ChatService({ store: t.store, bus });
  const app = createApp({
    store: t.store,
    auth: t.auth,
    config: TEST_CONFIG,
    staticDir: t.staticDir,
    templatesDir: TEMPLATES_DIR,
    uploadsDir: t.uploadsDir,
    extraRoutes: [chatRoutes({ chat, auth: t.auth, config: { origins: [] } })],
    onMembershipChange(change) {
      if (change.kind === "group_joined") {
        chat.memberJoined(change.groupId, change.userId, { seq: change.seq });
      }
    },
  });
  const ac = new AbortController();
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    fetch: app.fetch,
  });
  try {
    const user = await t.store.createUser({
      mobile: "13900000001",
      passwordHash: "x",
      nickname: "ann",
      avatar: "",
      sex: "U",
      memo: "",
    }, 0);
    const token = await t.auth.issueToken(user.id);
    const refused = await rawHandshake(server.addr.port, "/chat?id=1");
    refused.conn.close();
    assert.equal(refused.status, 401);
    const s = new TestSocket(`ws://127.0.0.1:${server.addr.port}/chat?token=${token}`);
    await s.opened;
    s.send({ cmd: 0 });
    await s.waitFor((f) => f["cmd"] === 0);
    await s.close();
  } finally {
    chat.close();
    await bus.close();
    ac.abort();
    await server.finished;
  }
});

Deno.test("/chat delivers to an old client that never sends a frame once the grace period ends", async () => {
  await using srv = await startChatServer({ catchUpGraceMs: 200 });
  const ann = await srv.user("ann");
  const bob = await srv.user("bob");
  await srv.store.addFriendship(ann.id, bob.id, 0);
  const a = await srv.connect(ann);
  const b = await srv.connect(bob, { catchUp: false });
  const opened = performance.now();
  a.send({ cmd: 10, dstid: bob.id, media: 1, content: "old" });
  const [ack] = await a.waitFor((f) => f["cmd"] === 20);
  assert.match(String(ack?.["cid"]), /^[0-9a-f-]{36}$/, "a missing cid is made up by the server");
  const [got] = await b.waitFor(isMsg);
  assert.equal(got?.["content"], "old");
  assert.ok(performance.now() - opened >= 150, "held until the grace period ended");
});
