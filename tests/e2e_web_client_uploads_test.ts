/**
 * End-to-end, uploads that fail, in a real headless chromium (fake
 * microphone) against a real server process: a voice clip or a photo whose
 * upload is refused (a 500, not a short busy wait) is not lost. It shows as
 * a failed message with Retry in the chat it was picked in, stays there
 * across chat switches, and Retry uploads it again and sends it to that chat
 * even when the user has opened another one meanwhile.
 *
 * Skipped (with a note) only when /usr/bin/chromium is missing; `.ci/run`
 * installs it.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { hasChromium, launchBrowser } from "./_browser.ts";
import { register as registerByApi } from "./_node_helpers.ts";
import {
  addFriends,
  eventually,
  history,
  oneNode,
  phonePage,
  png,
  register,
  T,
} from "./_web_pages.ts";

Deno.test({
  name:
    "web client: a voice clip or photo whose upload failed shows failed with Retry, and Retry sends it to the chat it was picked in",
  ignore: !hasChromium(),
  async fn() {
    await using node = await oneNode("lanchat_e2e_uploads_");
    const base = node.base;
    const bob = await registerByApi(base, "13900000022", "Bob");
    const carol = await registerByApi(base, "13900000023", "Carol");
    await using browser = await launchBrowser();
    const { ctx, page: a, errors } = await phonePage(browser);
    await ctx.grantPermissions(["microphone"], { origin: base });

    const idA = await register(a, base, {
      mobile: "13900000021",
      nickname: "Alice",
      avatar: "avatar_a.png",
    });
    // Uploads fail with a 500, go through, or wait for the test's word.
    let mode: "fail" | "pass" | "hold" = "fail";
    let release = () => {};
    let tries = 0;
    await a.route("**/attach/upload", async (route) => {
      tries++;
      if (mode === "fail") {
        return await route.fulfill({
          status: 500,
          contentType: "application/json",
          body: JSON.stringify({ code: -1, msg: "Disk full" }),
        });
      }
      if (mode === "hold") {
        const { promise, resolve } = Promise.withResolvers<void>();
        release = resolve;
        await promise;
      }
      await route.continue();
    });

    const [{ conv: toBob, row: rowBob }, { conv: toCarol, row: rowCarol }] = await addFriends(
      a,
      idA,
      [bob, carol],
    );
    await rowBob.click();
    const media = async (token: string, conv: string) =>
      (await history(base, token, conv)).map((m) => m.media);

    // A voice clip whose upload fails: a failed voice bubble with Retry, kept across a switch.
    await a.click("#voice-toggle");
    const hold = await a.locator("#hold").boundingBox();
    ok(hold !== null);
    await a.mouse.move(hold.x + hold.width / 2, hold.y + hold.height / 2);
    await a.mouse.down();
    await a.waitForTimeout(1500);
    await a.mouse.up();
    const failedVoice = a.locator('#msglist li.mine[data-status="failed"]', {
      has: a.locator(".voice"),
    });
    await failedVoice.locator(".retry").waitFor({ timeout: T });
    strictEqual(await failedVoice.locator(".retry").getAttribute("title"), "Disk full");
    strictEqual(tries, 1, "a 500 is not retried by itself");
    await a.click("#voice-toggle");
    await a.click("#chat-back");
    await rowCarol.click();
    // Held ones are drawn right after the history: count once it is in.
    await a.locator("#history-status", { hasText: "Start of the conversation" }).waitFor({
      timeout: T,
    });
    strictEqual(await a.locator("#msglist .voice").count(), 0, "it belongs to Bob's chat");
    await a.click("#chat-back");
    await rowBob.click();
    await failedVoice.locator(".retry").waitFor({ timeout: T });

    // Retry uploads the same recording again and sends it to Bob.
    mode = "pass";
    await failedVoice.locator(".retry").click();
    await a.locator('#msglist li.mine[data-status="sent"] .voice').waitFor({ timeout: T });
    strictEqual(await a.locator("#msglist li.mine .voice").count(), 1, "the failed one is gone");
    const [voice] = await history(base, bob.token, toBob);
    strictEqual(voice?.media, 3);
    ok(voice.url.startsWith("/mnt/"), voice.url);
    ok(voice.amount >= 1, `${voice.amount} s`);
    strictEqual(tries, 2);

    // A photo whose upload fails shows failed, with the picked picture in its place.
    mode = "fail";
    await a.click("#more-toggle");
    await a.setInputFiles("#pick-photo", await png("photo.png"));
    const failedPhoto = a.locator('#msglist li.mine[data-status="failed"]', {
      has: a.locator("img.picture"),
    });
    await failedPhoto.locator(".retry").waitFor({ timeout: T });
    ok((await failedPhoto.locator("img.picture").getAttribute("src"))?.startsWith("blob:"));
    // Retry, and Carol's chat is opened while the upload is still going: it still goes to Bob.
    mode = "hold";
    await failedPhoto.locator(".retry").click();
    await a.locator('#msglist li.mine[data-status="pending"] img.picture').waitFor({ timeout: T });
    await a.click("#chat-back");
    await rowCarol.click();
    // The route holds it only once the request is in: release no sooner.
    await eventually("the retried upload reaches the route", () => Promise.resolve(tries === 4));
    release();
    await eventually(
      "the photo reaches Bob",
      async () => (await media(bob.token, toBob)).length > 1,
    );
    deepStrictEqual(await media(bob.token, toBob), [3, 4]);
    deepStrictEqual(await media(carol.token, toCarol), [], "nothing went to Carol");
    strictEqual(await a.locator("#msglist img.picture").count(), 0);
    await a.click("#chat-back");
    await rowBob.click();
    await a.locator('#msglist li.mine[data-status="sent"] img.picture').waitFor({ timeout: T });
    strictEqual(await a.locator('#msglist li[data-status="failed"]').count(), 0);
    strictEqual(await a.locator("#msglist li.mine img.picture").count(), 1);
    strictEqual(errors.join("\n"), "");
  },
});
