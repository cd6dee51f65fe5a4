/** Steps the web client's end-to-end tests share: registering through the page, sending, waiting. */

import { ok, strictEqual } from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import type { BrowserContext, Locator, Page } from "playwright-core";
import type { TestBrowser } from "./_browser.ts";
import { ROOT, startNode } from "./_node_helpers.ts";

/** How long a step may wait, ms. */
export const T = 10_000;

/** One server process on its own temporary data folder (in-process bus). */
export interface OneNode extends AsyncDisposable {
  readonly port: number;
  /** `http://127.0.0.1:<port>`. */
  readonly base: string;
}

/** Start {@linkcode OneNode}; disposing it stops the process and removes the folder. */
export async function oneNode(prefix: string): Promise<OneNode> {
  const dataDir = await Deno.makeTempDir({ prefix });
  try {
    const node = await startNode({ env: { CHAT_DATA: dataDir, CHAT_BUS: "local" } });
    return {
      port: node.port,
      base: `http://127.0.0.1:${node.port}`,
      async [Symbol.asyncDispose]() {
        await node[Symbol.asyncDispose]();
        await Deno.remove(dataDir, { recursive: true });
      },
    };
  } catch (error) {
    await Deno.remove(dataDir, { recursive: true });
    throw error;
  }
}

/** The 1:1 conversation key of users `x` and `y`, as the server makes it. */
export function userConv(x: number, y: number): string {
  return `u:${Math.min(x, y)}:${Math.max(x, y)}`;
}

/** A stored message, as the history route lists it. */
export interface StoredMessage {
  media: number;
  content: string;
  url: string;
  amount: number;
}

/** The stored messages of `conv`, oldest first (50 at most), as `token`'s user reads them. */
export async function history(
  base: string,
  token: string,
  conv: string,
): Promise<StoredMessage[]> {
  const res = await fetch(`${base}/message/history?conv=${encodeURIComponent(conv)}&limit=50`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const body = await res.json();
  strictEqual(body.code, 0, JSON.stringify(body));
  return body.rows;
}

/** Wait until `check()` holds, polling every 100 ms; `what` names it in the timeout error. */
export async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + T;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A PNG from tests/testdata, as playwright wants a file payload. */
export async function png(name: string) {
  const buffer = Buffer.from(await Deno.readFile(join(ROOT, "tests", "testdata", name)));
  return { name, mimeType: "image/png", buffer };
}

export async function register(
  page: Page,
  base: string,
  who: { mobile: string; nickname: string; avatar: string },
) {
  await page.goto(`${base}/user/register.shtml`);
  await page.fill("#mobile", who.mobile);
  await page.fill("#passwd", "secret-pass");
  await page.fill("#confirm", "secret-pass");
  await page.fill("#nickname", who.nickname);
  await page.selectOption("#sex", "W");
  await page.fill("#memo", "hello from " + who.mobile);
  await page.setInputFiles("#avatar", await png(who.avatar));
  await page.click("#register button[type=submit]");
  await page.waitForURL("**/chat/index.shtml", { timeout: T });
  await online(page);
  const id = Number(await page.getAttribute('meta[name="lanchat-user"]', "content"));
  ok(id > 0, "the page knows its user");
  return id;
}

/**
 * Wait until `expression` is truthy in the page. (Playwright's
 * waitForFunction compiles strings with eval, which the page's CSP refuses;
 * evaluate goes through the devtools protocol instead.)
 */
export async function until(page: Page, expression: string) {
  const deadline = Date.now() + T;
  while (!(await page.evaluate(expression))) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${expression}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function online(page: Page) {
  await page.waitForSelector('#conn[data-state="online"]', { timeout: T });
}

export async function prompt(page: Page, opener: string, value: string) {
  await page.click(opener);
  await page.fill("dialog.prompt input", value);
  await page.click('dialog.prompt button[value="ok"]');
}

/**
 * Add `friends` from the friend-add prompt of the page of user `me`; resolves
 * once each has a row, with each one's conversation key and row.
 */
export async function addFriends<const F extends readonly { id: number }[]>(
  page: Page,
  me: number,
  friends: F,
): Promise<{ -readonly [K in keyof F]: { conv: string; row: Locator } }> {
  const added = [];
  for (const friend of friends) {
    await prompt(page, "#add-friend", String(friend.id));
    const conv = userConv(me, friend.id);
    const row = page.locator(`#friends button[data-conv="${conv}"]`);
    await row.waitFor({ timeout: T });
    added.push({ conv, row });
  }
  // One entry per friend, in order: the tuple type says so.
  return added as { -readonly [K in keyof F]: { conv: string; row: Locator } };
}

export async function sendText(page: Page, text: string) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

/** The last bubble of the open chat whose text is `text`, once it is there. */
export async function bubble(page: Page, text: string, status = "sent") {
  const row = page.locator(`#msglist li[data-status="${status}"]`, {
    has: page.locator(".bubble", { hasText: text }),
  }).last();
  await row.waitFor({ timeout: T });
  return row;
}

/** A phone-sized page in a new context of `browser`, and the page errors it throws (checked empty at the end). */
export async function phonePage(
  browser: TestBrowser,
): Promise<{ ctx: BrowserContext; page: Page; errors: string[] }> {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 780 } });
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  return { ctx, page, errors };
}
