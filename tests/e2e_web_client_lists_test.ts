/**
 * End-to-end, the conversation lists in a real headless chromium against a
 * real server process: a message arriving (which reorders the rows and
 * updates a badge) leaves the keyboard focus on the row that had it, so a
 * keyboard user tabbing through the list keeps their place.
 *
 * Skipped (with a note) only when /usr/bin/chromium is missing; `.ci/run`
 * installs it.
 */

import { strictEqual } from "node:assert/strict";
import { hasChromium, launchBrowser } from "./_browser.ts";
import { connectUser, register as registerByApi } from "./_node_helpers.ts";
import { oneNode, phonePage, prompt, register, T, userConv } from "./_web_pages.ts";

Deno.test({
  name:
    "web client: a message arriving keeps the keyboard focus on the same conversation row; opening a chat moves it in, Back brings it back",
  ignore: !hasChromium(),
  async fn() {
    await using node = await oneNode("lanchat_e2e_lists_");
    const base = node.base;
    const bob = await registerByApi(base, "13900000032", "Bob");
    const carol = await registerByApi(base, "13900000033", "Carol");
    const dan = await registerByApi(base, "13900000034", "Dan");
    await using browser = await launchBrowser();
    const { page: a, errors } = await phonePage(browser);
    const idA = await register(a, base, {
      mobile: "13900000031",
      nickname: "Alice",
      avatar: "avatar_a.png",
    });
    for (const friend of [bob, carol, dan]) await prompt(a, "#add-friend", String(friend.id));
    const toBob = userConv(idA, bob.id);
    const toCarol = userConv(idA, carol.id);
    const toDan = userConv(idA, dan.id);
    const row = (conv: string) => a.locator(`#friends button[data-conv="${conv}"]`);
    await row(toDan).waitFor({ timeout: T });
    const focused = () => a.evaluate(`document.activeElement?.dataset?.conv ?? null`);
    const ws = await connectUser(`ws://127.0.0.1:${node.port}`, carol);
    let acks = 0;
    const carolSays = async (content: string) => {
      ws.send({ cmd: 10, dstid: idA, media: 1, content, cid: `c-${content}` });
      await ws.waitFor((f) => f["cmd"] === 20, ++acks);
      await row(toCarol).locator(".preview", { hasText: content }).waitFor({ timeout: T });
    };

    // Bob's row has the focus; a message from Carol moves hers to the top.
    await row(toBob).focus();
    strictEqual(await focused(), toBob);
    await carolSays("first");
    strictEqual(await focused(), toBob, "Bob's row keeps the focus");

    // Carol's own row keeps it too, and Tab goes on from where it is now (the top).
    await row(toCarol).focus();
    await carolSays("second");
    strictEqual(await row(toCarol).locator(".badge").textContent(), "2");
    strictEqual(await focused(), toCarol, "Carol's row keeps the focus");
    const order: string[] = await a.evaluate(
      `[...document.querySelectorAll("#friends button[data-conv]")].map((b) => b.dataset.conv)`,
    );
    strictEqual(order[0], toCarol);
    await a.keyboard.press("Tab");
    strictEqual(await focused(), order[1]);

    // Enter opens the chat and the focus goes into it, on its name; Back brings it to the row.
    await row(toBob).focus();
    await a.keyboard.press("Enter");
    await a.locator("#chat:not([hidden])").waitFor({ timeout: T });
    strictEqual(await a.evaluate(`document.activeElement?.id`), "chat-title");
    strictEqual(await a.locator("#chat-title").textContent(), "Bob");
    await a.locator("#chat-back").focus();
    await a.keyboard.press("Enter");
    await a.locator("#chat").waitFor({ state: "hidden", timeout: T });
    strictEqual(await focused(), toBob, "back on Bob's row");
    await ws.close();
    strictEqual(errors.join("\n"), "");
  },
});
