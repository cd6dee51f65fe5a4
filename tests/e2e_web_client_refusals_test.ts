/**
 * End-to-end, the web client against what the server refuses or rate-limits,
 * in a real headless chromium against a real server process: a message
 * refused for good (`conflict`: its cid went to another chat before) shows
 * the reason instead of a Retry that could never pass; and a group member
 * who is not a friend is looked up once however many of their messages show
 * at once (the server limits `/user/find` per user, docs/api.md).
 *
 * Skipped (with a note) only when /usr/bin/chromium is missing; `.ci/run`
 * installs it.
 */

import { deepStrictEqual, match, strictEqual } from "node:assert/strict";
import { hasChromium, launchBrowser } from "./_browser.ts";
import { connectUser, postOk, register as registerByApi } from "./_node_helpers.ts";
import {
  addFriends,
  bubble,
  history,
  oneNode,
  phonePage,
  prompt,
  register,
  sendText,
  T,
} from "./_web_pages.ts";

Deno.test({
  name:
    "web client: a message refused with conflict (its cid used in another chat) shows why, with no Retry, and stays so",
  ignore: !hasChromium(),
  async fn() {
    await using node = await oneNode("lanchat_e2e_refusals_");
    const base = node.base;
    const bob = await registerByApi(base, "13900000042", "Bob");
    const carol = await registerByApi(base, "13900000043", "Carol");
    await using browser = await launchBrowser();
    const { page: a, errors } = await phonePage(browser);
    const idA = await register(a, base, {
      mobile: "13900000041",
      nickname: "Alice",
      avatar: "avatar_a.png",
    });
    const [{ conv: toBob, row: rowBob }, { conv: toCarol, row: rowCarol }] = await addFriends(
      a,
      idA,
      [bob, carol],
    );

    // A client that hands out one cid twice (as a buggy one would).
    await a.evaluate(`crypto.randomUUID = () => "reused-cid-1"`);
    await rowBob.click();
    await sendText(a, "to Bob");
    await bubble(a, "to Bob", "sent");
    await a.click("#chat-back");
    await rowCarol.click();
    await sendText(a, "to Carol");

    const failed = await bubble(a, "to Carol", "failed");
    const note = failed.locator(".not-sent");
    await note.waitFor({ timeout: T });
    match(await note.textContent() ?? "", /^Not sent: .*another conversation/);
    strictEqual(await failed.locator(".retry").count(), 0, "no Retry that could never pass");
    // Still so when the chat is opened again.
    await a.click("#chat-back");
    await rowCarol.click();
    const again = await bubble(a, "to Carol", "failed");
    await again.locator(".not-sent").waitFor({ timeout: T });
    strictEqual(await again.locator(".retry").count(), 0);
    deepStrictEqual((await history(base, carol.token, toCarol)).map((m) => m.content), []);
    deepStrictEqual((await history(base, bob.token, toBob)).map((m) => m.content), ["to Bob"]);
    strictEqual(errors.join("\n"), "");
  },
});

Deno.test({
  name:
    "web client: a group member who is not a friend is looked up once however many of their messages show at once",
  ignore: !hasChromium(),
  async fn() {
    await using node = await oneNode("lanchat_e2e_refusals_");
    const base = node.base;
    const bob = await registerByApi(base, "13900000052", "Bob");
    const created = await postOk(base, "/contact/createcommunity", { name: "Club" }, bob.token);
    const groupId = (created["data"] as { id: number }).id;
    const ws = await connectUser(`ws://127.0.0.1:${node.port}`, bob);
    const COUNT = 12;
    for (let i = 1; i <= COUNT; i++) {
      ws.send({ cmd: 11, dstid: groupId, media: 1, content: `club ${i}`, cid: `b-${i}` });
    }
    await ws.waitFor((f) => f["cmd"] === 20, COUNT);
    await ws.close();

    await using browser = await launchBrowser();
    const { page: a, errors } = await phonePage(browser);
    await register(a, base, { mobile: "13900000051", nickname: "Alice", avatar: "avatar_a.png" });
    const lookups: string[] = [];
    a.on("request", (req) => {
      const url = new URL(req.url());
      if (url.pathname === "/user/find" && url.searchParams.get("id") === String(bob.id)) {
        lookups.push(req.url());
      }
    });
    await a.click('.tabbar button[data-tab="groups"]');
    await prompt(a, "#join-group", String(groupId));
    await a.locator(`#groups button[data-conv="g:${groupId}"]`).click();
    await bubble(a, `club ${COUNT}`);
    const senders = a.locator("#msglist .msg-sender", { hasText: "Bob" });
    for (let i = 0; i < 100 && await senders.count() < COUNT; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    strictEqual(await senders.count(), COUNT, "each of Bob's messages is named");
    strictEqual(lookups.length, 1, lookups.join("\n"));
    strictEqual(errors.join("\n"), "");
  },
});
