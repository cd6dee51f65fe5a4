/**
 * createApp(): the request log, the error boundary (logged 500), extra routes
 * before the 404, and no token or password in any log record.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { Hono } from "hono";
import { reset } from "@logtape/logtape";
import type { LogRecord } from "@logtape/logtape";
import { MemoryStore } from "../lib/store_memory.ts";
import { call, makeTestApp, register } from "./_http_helpers.ts";
import { captureLogs } from "./_logs.ts";

function recordText(record: LogRecord): string {
  return JSON.stringify({
    category: record.category,
    message: record.message.map(String),
    properties: record.properties,
  }, (_k, v) => v instanceof Error ? `${v.name}: ${v.message}` : v);
}

Deno.test("no token or password appears in any log record", async () => {
  const { records } = await captureLogs();
  try {
    await using t = await makeTestApp();
    const passwd = "Very-Secret-Pass-42";
    const reg = await call(t.app, "/user/register", { fields: { mobile: "13800000001", passwd } });
    const first = reg.body.data.token as string;
    const login = await call(t.app, "/user/login", {
      fields: { mobile: "13800000001", passwd },
      form: true,
    });
    const second = login.body.data.token as string;
    await call(t.app, "/user/login", { fields: { mobile: "13800000001", passwd: passwd + "x" } });
    await call(t.app, `/user/find?id=1&token=${first}&passwd=${passwd}`, { method: "GET" });
    await call(t.app, "/contact/loadfriend", { token: second });
    await call(t.app, "/user/logout", { fields: { token: first } });
    await call(t.app, "/user/find", { fields: { id: 1 }, token: first });
    const lines = records.map(recordText);
    ok(lines.some((l) => l.includes('"path":"/user/find"')), "request log has the path");
    for (const line of lines) {
      for (const secret of [passwd, first, second]) {
        ok(!line.includes(secret), `secret in log: ${line}`);
      }
    }
  } finally {
    await reset();
  }
});

Deno.test("the request log names method, path without query, status and ms", async () => {
  const { records } = await captureLogs();
  try {
    await using t = await makeTestApp();
    await call(t.app, "/nope?token=abc", { method: "GET" });
    const http = records.filter((r) => r.category.join(".") === "chat.http");
    strictEqual(http.length, 1);
    const { method, path, status, ms } = http[0]!.properties;
    deepStrictEqual({ method, path, status }, { method: "GET", path: "/nope", status: 404 });
    ok(typeof ms === "number" && ms >= 0);
  } finally {
    await reset();
  }
});

Deno.test("an unexpected error is logged once with context and answered with a bare 500", async () => {
  class BrokenStore extends MemoryStore {
    override findUser(): Promise<undefined> {
      return Promise.reject(new Error("disk on fire"));
    }
  }
  const { records } = await captureLogs();
  try {
    await using t = await makeTestApp({ store: new BrokenStore() });
    const { token } = await register(t.app, "13800000001");
    const r = await call(t.app, "/user/find", { fields: { id: 1 }, token });
    strictEqual(r.status, 500);
    deepStrictEqual(r.body, { code: -1, msg: "Internal error" });
    const errors = records.filter((rec) => rec.level === "error");
    strictEqual(errors.length, 1);
    strictEqual(errors[0]!.properties["path"], "/user/find");
    ok(String(errors[0]!.properties["error"]).includes("disk on fire"));
  } finally {
    await reset();
  }
});

Deno.test("extra routes are mounted before the 404 fallback", async () => {
  const extra = new Hono();
  extra.get("/chat/history", (c) => c.json({ code: 0, msg: "extra" }));
  await using t = await makeTestApp({ extra: { extraRoutes: [extra] } });
  deepStrictEqual((await call(t.app, "/chat/history", { method: "GET" })).body, {
    code: 0,
    msg: "extra",
  });
  strictEqual((await call(t.app, "/chat/other", { method: "GET" })).status, 404);
});
