/**
 * End-to-end, contact cards (media 9) in a real headless chromium against a
 * real server process: tapping a stranger's card asks first and adds them
 * only on "Add"; a friend's card opens the chat with them.
 *
 * Skipped (with a note) only when /usr/bin/chromium is missing; `.ci/run`
 * installs it.
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { hasChromium, launchBrowser } from "./_browser.ts";
import { connectUser, register as registerByApi } from "./_node_helpers.ts";
import { oneNode, prompt, register, T, until } from "./_web_pages.ts";

/** The ids of `token`'s friends, as the server lists them. */
async function friendIds(base: string, token: string): Promise<number[]> {
  const res = await fetch(`${base}/contact/loadfriend`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const body = await res.json();
  return (body.rows as { id: number }[]).map((u) => u.id).sort((a, b) => a - b);
}

Deno.test({
  name: "web client: a stranger's contact card asks before adding; a friend's card opens the chat",
  ignore: !hasChromium(),
  async fn() {
    await using node = await oneNode("lanchat_e2e_cards_");
    const base = node.base;
    const carol = await registerByApi(base, "13900000013", "Carol");
    const dan = await registerByApi(base, "13900000014", "Dan");
    await using browser = await launchBrowser();
    const a = await (await browser.newContext({ viewport: { width: 390, height: 780 } }))
      .newPage();
    const idA = await register(a, base, {
      mobile: "13900000011",
      nickname: "Alice",
      avatar: "avatar_a.png",
    });
    await prompt(a, "#add-friend", String(carol.id));
    const toCarol = `u:${Math.min(idA, carol.id)}:${Math.max(idA, carol.id)}`;
    const rowCarol = a.locator(`#friends button[data-conv="${toCarol}"]`);
    await rowCarol.waitFor({ timeout: T });
    await rowCarol.click();

    // Carol shares Dan's card.
    const ws = await connectUser(`ws://127.0.0.1:${node.port}`, carol);
    ws.send({ cmd: 10, dstid: idA, media: 9, content: String(dan.id), memo: "Dan", cid: "k1" });
    await ws.waitFor((f) => f["cmd"] === 20);
    await ws.close();
    const danCard = a.locator("#msglist button.card.contact", { hasText: "Dan" });
    await danCard.waitFor({ timeout: T });

    // A tap asks first; Cancel adds nobody.
    await danCard.click();
    const dialog = a.locator("dialog.prompt");
    await dialog.waitFor({ timeout: T });
    strictEqual(
      await dialog.locator("p").textContent(),
      `Add Dan (number ${dan.id}) as a friend?`,
    );
    await dialog.locator('button[value="cancel"]').click();
    await dialog.waitFor({ state: "detached", timeout: T });
    deepStrictEqual(await friendIds(base, dan.token), []);

    // "Add" adds him.
    await danCard.click();
    await dialog.locator('button[value="ok"]').click();
    const toDan = `u:${Math.min(idA, dan.id)}:${Math.max(idA, dan.id)}`;
    await a.locator(`#friends button[data-conv="${toDan}"]`).waitFor({ timeout: T });
    deepStrictEqual(await friendIds(base, dan.token), [idA]);

    // Dan is a friend now: his card opens the chat with him, no question asked.
    await a.click("#chat-back");
    await rowCarol.click();
    await danCard.click();
    await until(a, `document.querySelector("#chat-title").textContent === "Dan"`);
    strictEqual(await a.locator("dialog.prompt").count(), 0);
    // The card that had the focus is gone with Carol's chat: the focus is on Dan's chat's name.
    strictEqual(await a.evaluate(`document.activeElement?.id`), "chat-title");
  },
});
