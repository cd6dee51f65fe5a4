/** Pages and static files: /, the login page, /asset, unknown paths (L10, L11). */

import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { escapeHtml, renderTemplate } from "../lib/http/pages.ts";
import { call, makeTestApp } from "./_http_helpers.ts";

Deno.test("/ redirects to the login page", async () => {
  await using t = await makeTestApp();
  const res = await t.app.fetch(new Request("http://127.0.0.1/"));
  strictEqual(res.status, 302);
  strictEqual(res.headers.get("location"), "/user/login.shtml");
  await res.body?.cancel();
});

Deno.test("/user/login.shtml renders a form with a nonce-locked inline script", async () => {
  await using t = await makeTestApp();
  const res = await t.app.fetch(new Request("http://127.0.0.1/user/login.shtml"));
  strictEqual(res.status, 200);
  match(res.headers.get("content-type") ?? "", /^text\/html/);
  const html = await res.text();
  const nonce = html.match(/<script nonce="([0-9a-f]{32})">/)?.[1];
  ok(nonce !== undefined, "script carries a nonce");
  match(
    res.headers.get("content-security-policy") ?? "",
    new RegExp(`script-src 'self' 'nonce-${nonce}'`),
  );
  match(html, /fetch\(action/);
  match(html, /"\/user\/login"/);
  ok(!/https?:\/\//.test(html.replace(/xmlns="[^"]*"/g, "")), "no CDN");
  ok(!html.includes("{{"), "every placeholder filled");
});

Deno.test("renderTemplate() escapes the values it inserts", () => {
  strictEqual(
    renderTemplate("<p>{{ name }}</p>{{missing}}", { name: `<b a="1">&'` }),
    "<p>&#60;b a=&#34;1&#34;&#62;&#38;&#39;</p>",
  );
  strictEqual(escapeHtml("plain"), "plain");
});

Deno.test("/asset serves static files without listing or traversal", async (t) => {
  await using h = await makeTestApp();
  await Deno.writeTextFile(`${h.dir}/secret.txt`, "secret");
  const css = await h.app.fetch(new Request("http://127.0.0.1/asset/css/app.css"));
  strictEqual(css.status, 200);
  match(css.headers.get("content-type") ?? "", /^text\/css/);
  strictEqual(css.headers.get("x-content-type-options"), "nosniff");
  strictEqual(await css.text(), "body{}\n");
  for (
    const path of [
      "/asset/",
      "/asset/css/",
      "/asset/../secret.txt",
      "/asset/..%2fsecret.txt",
      "/asset/%2e%2e/secret.txt",
      "/asset/nope.js",
    ]
  ) {
    await t.step(path, async () => {
      const r = await call(h.app, path, { method: "GET" });
      strictEqual(r.status, 404);
      ok(!JSON.stringify(r.body).includes("secret"));
    });
  }
});

Deno.test("L10/L11: unknown paths get a JSON 404, not a redirect to login", async (t) => {
  await using h = await makeTestApp();
  for (
    const path of [
      "/favicon.ico",
      "/chat/update.shtml",
      "/chat/sysmsg.shtml",
      "/nope",
      "/user/nope",
    ]
  ) {
    await t.step(path, async () => {
      const r = await call(h.app, path, { method: "GET" });
      strictEqual(r.status, 404);
      deepStrictEqual(r.body, { code: -1, msg: "Not found" });
      strictEqual(r.headers.get("location"), null);
    });
  }
});
