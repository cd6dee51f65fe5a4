/**
 * End-to-end: the web client in a real headless chromium against two real
 * server processes on 127.0.0.1 forming a cluster (one SQLite data folder,
 * the UDP bus on loopback). Two users in two browser
 * contexts register, befriend, chat 1:1 and in a group, send an image, a
 * sticker and a voice clip; one drops off the network and gets what it missed
 * after reconnecting; an `<img onerror>` payload sent as a message and used as
 * a nickname is shown as text and never runs. Screenshots of the chat window
 * go to test-artifacts/.
 *
 * Skipped (with a note) only when /usr/bin/chromium is missing; `.ci/run`
 * installs it.
 */

import { ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { hasChromium, launchBrowser } from "./_browser.ts";
import { loopbackUdpBus, ROOT, startNode } from "./_node_helpers.ts";
import { bubble, online, png, prompt, register, sendText, T, until } from "./_web_pages.ts";

const ARTIFACTS = join(ROOT, "test-artifacts");
const XSS = `<img src=x onerror="window.__xss=1">`;
/** The same attack within the 20-character nickname limit (it would call `window.a`). */
const XSS_NICK = "<img src onerror=a()>".replace("()", "");

Deno.test({
  name:
    "web client on a two-node cluster: two users register, befriend, chat 1:1 and in a group, and catch up after going offline",
  ignore: !hasChromium(),
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "lanchat_e2e_" });
    try {
      // Two real server processes (main.ts) sharing the data folder and a
      // loopback UDP bus: Alice uses node 1, Bob node 2.
      const bus = loopbackUdpBus();
      const env = { CHAT_DATA: dataDir, ...bus.env };
      await using n1 = await startNode({
        env: { ...env, CHAT_NODE_ID: "web1" },
        extraNet: bus.extraNet,
      });
      await using n2 = await startNode({
        env: { ...env, CHAT_NODE_ID: "web2" },
        extraNet: bus.extraNet,
      });
      const url1 = `http://127.0.0.1:${n1.port}`;
      const url2 = `http://127.0.0.1:${n2.port}`;
      await using browser = await launchBrowser();
      const ctxA = await browser.newContext({ viewport: { width: 390, height: 780 } });
      const ctxB = await browser.newContext({ viewport: { width: 1100, height: 720 } });
      await ctxB.grantPermissions(["microphone"], { origin: url2 });
      const a = await ctxA.newPage();
      // Anything injected that runs sets a flag (the CSP would also stop inline handlers).
      await ctxA.addInitScript("window.a = () => { window.__xss = 1; }");
      await ctxB.addInitScript("window.a = () => { window.__xss = 1; }");
      const b = await ctxB.newPage();
      const errors: string[] = [];
      for (const p of [a, b]) p.on("pageerror", (e) => errors.push(String(e)));

      const idA = await register(a, url1, {
        mobile: "13800000001",
        nickname: "Alice",
        avatar: "avatar_a.png",
      });
      const idB = await register(b, url2, {
        mobile: "13800000002",
        nickname: XSS_NICK,
        avatar: "avatar_b.png",
      });
      const conv = `u:${Math.min(idA, idB)}:${Math.max(idA, idB)}`;

      // The token stays in the HttpOnly cookie: not in the URL, not readable by scripts.
      strictEqual(new URL(a.url()).search, "");
      strictEqual(await a.evaluate("document.cookie"), "");

      // Alice adds Bob by number; Bob's nickname (the payload) is shown as text.
      await prompt(a, "#add-friend", String(idB));
      const row = a.locator(`#friends button[data-conv="${conv}"]`);
      await row.waitFor({ timeout: T });
      strictEqual(await row.locator(".row-name").textContent(), XSS_NICK);

      // 1:1 both ways, with unread counts and a draft that survives incoming messages.
      await row.click();
      await sendText(a, "Hi Bob");
      await bubble(a, "Hi Bob");
      const rowB = b.locator(`#friends button[data-conv="${conv}"]`);
      await rowB.locator(".badge").waitFor({ timeout: T });
      strictEqual(await rowB.locator(".badge").textContent(), "1");
      strictEqual(await rowB.locator(".preview").textContent(), "Hi Bob");
      await rowB.click();
      await bubble(b, "Hi Bob");
      await b.fill("#text", "half-typed draft");
      await sendText(a, XSS);
      await bubble(b, XSS);
      strictEqual(await b.inputValue("#text"), "half-typed draft");
      await sendText(b, "Hello Alice");
      await bubble(a, "Hello Alice");

      // An image, a sticker and a voice clip.
      await a.click("#more-toggle");
      await a.setInputFiles("#pick-photo", await png("photo.png"));
      const picture = b.locator("#msglist img.picture").last();
      await picture.waitFor({ timeout: T });
      await until(
        b,
        `(() => { const img = [...document.querySelectorAll("#msglist img.picture")].at(-1);
          return img !== undefined && img.complete && img.naturalWidth === 160; })()`,
      );
      await a.click("#emoji-toggle");
      await a.click('#sticker-panel button[data-sticker="smile"]');
      await b.locator('#msglist img.sticker[title="smile"]').waitFor({ timeout: T });
      await b.fill("#text", "");
      await b.click("#voice-toggle");
      const hold = await b.locator("#hold").boundingBox();
      ok(hold !== null);
      await b.mouse.move(hold.x + hold.width / 2, hold.y + hold.height / 2);
      await b.mouse.down();
      await b.waitForTimeout(1500);
      await b.mouse.up();
      await a.locator("#msglist .voice").last().waitFor({ timeout: T });
      await b.locator('#msglist li.mine[data-status="sent"] .voice').last().waitFor({ timeout: T });
      await b.click("#voice-toggle");

      // A group: Alice creates it, Bob joins by number, both talk.
      await a.click("#chat-back");
      await a.click('.tabbar button[data-tab="groups"]');
      await a.click("#create-group");
      await a.fill("#name", "Lunch crew");
      await a.click("#createcom button[type=submit]");
      await a.waitForURL("**/chat/index.shtml#groups", { timeout: T });
      const groupRow = a.locator("#groups button[data-conv^='g:']").first();
      await groupRow.waitFor({ timeout: T });
      const gconv = (await groupRow.getAttribute("data-conv"))!;
      await online(a);
      await b.click('.tabbar button[data-tab="groups"]');
      await prompt(b, "#join-group", gconv.slice(2));
      const groupRowB = b.locator(`#groups button[data-conv="${gconv}"]`);
      await groupRowB.click();
      await sendText(b, "Pizza?");
      await groupRow.click();
      const pizza = await bubble(a, "Pizza?");
      strictEqual(await pizza.locator(".msg-sender").textContent(), XSS_NICK);
      await sendText(a, "Yes, at noon");
      await bubble(b, "Yes, at noon");

      // Bob drops off the network; Alice's messages reach him after he reconnects.
      await b.click('.tabbar button[data-tab="friends"]');
      await rowB.click();
      await ctxB.setOffline(true);
      await b.waitForSelector('#conn[data-state="offline"]', { timeout: T });
      await sendText(b, "sent while offline");
      await bubble(b, "sent while offline", "pending");
      await a.click("#chat-back");
      await a.click('.tabbar button[data-tab="friends"]');
      await row.click();
      await sendText(a, "missed one");
      await sendText(a, "missed two");
      await bubble(a, "missed two");
      await ctxB.setOffline(false);
      await online(b);
      await bubble(b, "missed one");
      await bubble(b, "missed two");
      await bubble(b, "sent while offline");
      await bubble(a, "sent while offline");
      const seqs: number[] = await b.evaluate(
        `[...document.querySelectorAll("#msglist li[data-seq]")].map((r) => Number(r.dataset.seq))`,
      );
      strictEqual(new Set(seqs).size, seqs.length, "each message shown once");
      ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]!), "in seq order");

      // Nothing injected ran, and no page error happened.
      for (const p of [a, b]) {
        strictEqual(await p.evaluate("typeof window.__xss"), "undefined");
        strictEqual(await p.locator("img[onerror]").count(), 0);
      }
      strictEqual(errors.join("\n"), "");

      await Deno.mkdir(ARTIFACTS, { recursive: true });
      for (const p of [a, b]) {
        await p.evaluate(`document.querySelectorAll(".toast").forEach((t) => t.remove())`);
      }
      await a.screenshot({ path: join(ARTIFACTS, "chat_window_mobile.png") });
      await b.screenshot({ path: join(ARTIFACTS, "chat_window_desktop.png") });

      // Logout revokes the token: the chat page sends Alice back to the login page.
      await a.click("#chat-back");
      await a.click('.tabbar button[data-tab="me"]');
      await a.click("#logout");
      await a.waitForURL("**/user/login.shtml", { timeout: T });
      await a.goto(`${url1}/chat/index.shtml`);
      strictEqual(new URL(a.url()).pathname, "/user/login.shtml");
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
