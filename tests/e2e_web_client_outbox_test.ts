/**
 * End-to-end, the web client's sending side in a real headless chromium
 * against a real server process: an upload still in flight when the user
 * opens another chat goes to the chat it was picked in; a message the
 * server never answered stays drawn across chat switches, shows failed
 * after the ack timeout, and goes out again (same cid, stored once) after
 * the socket is cut and comes back, as on a half-open connection. Also: a
 * photo on another site shows as a link; an upload answered 503 with a short
 * Retry-After is tried again; a fresh device whose first history read fails
 * once does not count old messages unread. And after an offline spell, at
 * most 32 unacked messages are on the socket at once; the rest follow, in
 * order, as the acks come back.
 *
 * Skipped (with a note) only when /usr/bin/chromium is missing; `.ci/run`
 * installs it.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { hasChromium, launchBrowser } from "./_browser.ts";
import { connectUser, register as registerByApi } from "./_node_helpers.ts";
import {
  addFriends,
  bubble,
  eventually,
  history,
  oneNode,
  online,
  phonePage,
  png,
  prompt,
  register,
  sendText,
  T,
  userConv,
} from "./_web_pages.ts";

/** The client's ack timeout (static/js/outbox.js) and some room. */
const FAILED_AFTER_MS = 15_000 + T;

Deno.test({
  name:
    "web client: an upload goes to the chat it was picked in; an unanswered message stays shown and is resent after the socket comes back",
  ignore: !hasChromium(),
  async fn() {
    await using node = await oneNode("lanchat_e2e_outbox_");
    const base = node.base;
    const bob = await registerByApi(base, "13900000002", "Bob");
    const carol = await registerByApi(base, "13900000003", "Carol");
    await using browser = await launchBrowser();
    const { page: a, errors } = await phonePage(browser);

    // The page's websocket goes through here: chat frames to the server can
    // be swallowed (a half-open socket), and the socket can be cut.
    let swallowChats = false;
    let cut = () => {};
    await a.routeWebSocket(/\/chat(\?|$)/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        if (swallowChats && typeof m === "string" && /"cmd":1[01][,}]/.test(m)) return;
        server.send(m);
      });
      cut = () => void ws.close({ code: 1001, reason: "cut by the test" });
    });

    const idA = await register(a, base, {
      mobile: "13900000001",
      nickname: "Alice",
      avatar: "avatar_a.png",
    });
    const [{ conv: toBob, row: rowBob }, { conv: toCarol, row: rowCarol }] = await addFriends(
      a,
      idA,
      [bob, carol],
    );

    // A photo picked in Bob's chat, uploading while Alice opens Carol's.
    const uploaded = Promise.withResolvers<void>();
    await a.route("**/attach/upload", async (route) => {
      await uploaded.promise;
      await route.continue();
    });
    await rowBob.click();
    await a.click("#more-toggle");
    await a.setInputFiles("#pick-photo", await png("photo.png"));
    await a.click("#chat-back");
    await rowCarol.click();
    uploaded.resolve();
    const deadline = Date.now() + T;
    while (!(await history(base, bob.token, toBob)).some((m) => m.media === 4)) {
      if (Date.now() > deadline) throw new Error("the photo never reached Bob's chat");
      await new Promise((r) => setTimeout(r, 100));
    }
    deepStrictEqual(await history(base, carol.token, toCarol), [], "nothing went to Carol");
    strictEqual(await a.locator("#msglist img.picture").count(), 0);

    // A message the server never gets: pending, still drawn after switching chats.
    swallowChats = true;
    await sendText(a, "lost in transit");
    await bubble(a, "lost in transit", "pending");
    await a.click("#chat-back");
    await rowBob.click();
    await a.click("#chat-back");
    await rowCarol.click();
    await bubble(a, "lost in transit", "pending");
    // No ack: it shows failed with its Retry, and is still there after another switch.
    await a.locator('#msglist li[data-status="failed"] .retry').waitFor({
      timeout: FAILED_AFTER_MS,
    });
    await a.click("#chat-back");
    await rowCarol.click();
    await a.locator('#msglist li[data-status="failed"] .retry').waitFor({ timeout: T });
    // The socket comes back: the timed-out message goes out again by itself, once.
    swallowChats = false;
    cut();
    await bubble(a, "lost in transit", "sent");
    const stored = (await history(base, carol.token, toCarol)).map((m) => m.content);
    deepStrictEqual(stored, ["lost in transit"]);
    strictEqual(errors.join("\n"), "");

    // A photo kept on another site (the page's CSP would not load it) shows as a link.
    const carolWs = await connectUser(`ws://127.0.0.1:${node.port}`, carol);
    carolWs.send({ cmd: 10, dstid: idA, media: 4, url: "https://example.com/a.jpg", cid: "c-x" });
    const away = a.locator("#msglist a.card", { hasText: "Photo on example.com" });
    await away.waitFor({ timeout: T });
    strictEqual(await away.getAttribute("href"), "https://example.com/a.jpg");
    strictEqual(await away.locator("img").count(), 0);
    // The message list is announced; the photo in Bob's chat has a name.
    strictEqual(await a.getAttribute("#msglist", "role"), "log");
    await a.click("#chat-back");
    await rowBob.click();
    await a.locator('#msglist a.media[aria-label="Photo"] img.picture').waitFor({ timeout: T });

    // An upload answered 503 with a short Retry-After is tried again by itself.
    await a.unroute("**/attach/upload");
    let uploadTries = 0;
    await a.route("**/attach/upload", async (route) => {
      if (uploadTries++ > 0) return await route.continue();
      await route.fulfill({
        status: 503,
        headers: { "retry-after": "1" },
        contentType: "application/json",
        body: JSON.stringify({ code: -1, msg: "The server is busy with other uploads" }),
      });
    });
    await a.click("#more-toggle");
    await a.setInputFiles("#pick-photo", await png("photo.png"));
    const photos = async () =>
      (await history(base, bob.token, toBob)).filter((m) => m.media === 4).length;
    const retried = Date.now() + T;
    while (await photos() < 2) {
      if (Date.now() > retried) throw new Error("the busy upload was not tried again");
      await new Promise((r) => setTimeout(r, 100));
    }
    strictEqual(uploadTries, 2);

    // Carol answers twice more; then Alice logs in on a fresh device whose first
    // history read fails once: the retry seeds the chat, so nothing old is unread.
    for (const content of ["one", "two"]) {
      carolWs.send({ cmd: 10, dstid: idA, media: 1, content, cid: `c-${content}` });
    }
    await carolWs.waitFor((f) => f["cmd"] === 20, 3);
    await carolWs.close();
    const fresh = await (await browser.newContext()).newPage();
    let refused = 0;
    const seedOfCarol = (url: URL) =>
      url.pathname === "/message/history" && url.searchParams.get("conv") === toCarol &&
      url.searchParams.get("limit") === "1";
    await fresh.route(seedOfCarol, async (route) => {
      if (refused++ > 0) return await route.continue();
      await route.fulfill({
        status: 503,
        contentType: "application/json",
        body: JSON.stringify({ code: -1, msg: "Draining" }),
      });
    });
    await fresh.goto(`${base}/user/login.shtml`);
    await fresh.fill("#mobile", "13900000001");
    await fresh.fill("#passwd", "secret-pass");
    await fresh.click("#login button[type=submit]");
    await fresh.waitForURL("**/chat/index.shtml", { timeout: T });
    await online(fresh);
    const freshCarol = fresh.locator(`#friends button[data-conv="${toCarol}"]`);
    await freshCarol.locator(".preview", { hasText: "two" }).waitFor({ timeout: T });
    strictEqual(await freshCarol.locator(".badge").count(), 0, "old messages are not unread");
    ok(refused >= 2, `one history read refused, then retried (${refused} reads)`);

    // An avatar on another site (the CSP would block it) shows the default picture.
    await fresh.evaluate(`fetch("/user/update", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ avatar: "https://example.com/me.png" }),
      })`);
    await fresh.reload();
    await online(fresh);
    ok((await fresh.getAttribute("#me-avatar", "src"))!.endsWith("/asset/images/avatar0.svg"));
  },
});

Deno.test({
  name:
    "web client: after an offline spell at most 32 unacked messages go out at once, the rest in order as acks arrive",
  ignore: !hasChromium(),
  async fn() {
    await using node = await oneNode("lanchat_e2e_outbox_cap_");
    const base = node.base;
    const bob = await registerByApi(base, "13900000042", "Bob");
    await using browser = await launchBrowser();
    const { ctx, page: a, errors } = await phonePage(browser);

    // The page's websocket goes through here: chat frames to the server are
    // counted, and frames to the page (acks among them) can be held back.
    let chats = 0;
    let holding = false;
    const held: (string | Buffer)[] = [];
    let toPage = (_m: string | Buffer) => {};
    await a.routeWebSocket(/\/chat(\?|$)/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        if (typeof m === "string" && /"cmd":1[01][,}]/.test(m)) chats++;
        server.send(m);
      });
      toPage = (m) => ws.send(m);
      server.onMessage((m) => holding ? held.push(m) : ws.send(m));
    });

    const idA = await register(a, base, {
      mobile: "13900000041",
      nickname: "Alice",
      avatar: "avatar_a.png",
    });
    const toBob = userConv(idA, bob.id);
    await prompt(a, "#add-friend", String(bob.id));
    await a.locator(`#friends button[data-conv="${toBob}"]`).click();

    // Offline, Alice writes 40 messages: all pending.
    await ctx.setOffline(true);
    await a.waitForSelector('#conn[data-state="offline"]', { timeout: T });
    const texts = Array.from({ length: 40 }, (_, i) => `m${i}`);
    for (const text of texts) await sendText(a, text);
    await bubble(a, "m39", "pending");
    strictEqual(chats, 0);

    // Back online, with no ack let through: 32 go out, and no more.
    holding = true;
    await ctx.setOffline(false);
    await online(a);
    await eventually("32 messages are sent", () => Promise.resolve(chats >= 32));
    await a.waitForTimeout(500);
    strictEqual(chats, 32, "unacked chat frames on the socket");
    strictEqual(await a.locator('#msglist li[data-status="pending"]').count(), 40);

    // The acks come: the other 8 follow, each once, and everything is stored in order.
    holding = false;
    for (const m of held.splice(0)) toPage(m);
    await eventually(
      "all 40 are stored",
      async () => (await history(base, bob.token, toBob)).length >= 40,
    );
    deepStrictEqual((await history(base, bob.token, toBob)).map((m) => m.content), texts);
    await eventually(
      "all 40 show sent",
      async () => await a.locator('#msglist li[data-status="sent"]').count() === 40,
    );
    strictEqual(chats, 40, "each message went out once");
    strictEqual(errors.join("\n"), "");
  },
});

Deno.test({
  name:
    "web client: a message stored whose ack was lost shows once when its chat is opened again, not twice",
  ignore: !hasChromium(),
  async fn() {
    await using node = await oneNode("lanchat_e2e_outbox_once_");
    const base = node.base;
    const bob = await registerByApi(base, "13900000052", "Bob");
    await using browser = await launchBrowser();
    const { page: a, errors } = await phonePage(browser);
    // Acks never reach the page (as when the socket dies right after the commit).
    await a.routeWebSocket(/\/chat(\?|$)/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        if (typeof m === "string" && /"cmd":20[,}]/.test(m)) return;
        ws.send(m);
      });
    });
    const idA = await register(a, base, {
      mobile: "13900000051",
      nickname: "Alice",
      avatar: "avatar_a.png",
    });
    const toBob = userConv(idA, bob.id);
    await prompt(a, "#add-friend", String(bob.id));
    const rowBob = a.locator(`#friends button[data-conv="${toBob}"]`);
    await rowBob.click();
    await sendText(a, "stored, ack lost");
    await eventually(
      "the message is stored",
      async () => (await history(base, bob.token, toBob)).length === 1,
    );
    await bubble(a, "stored, ack lost", "pending");

    // Reopened: the history has it (with its cid), and the outbox still holds it.
    await a.click("#chat-back");
    await rowBob.click();
    await a.locator("#history-status", { hasText: "Start of the conversation" }).waitFor({
      timeout: T,
    });
    strictEqual(
      await a.locator("#msglist li", { hasText: "stored, ack lost" }).count(),
      1,
      "one bubble for one message",
    );
    strictEqual(errors.join("\n"), "");
  },
});
