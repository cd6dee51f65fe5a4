/**
 * Bad input on every REST route: missing fields, wrong types, oversized
 * bodies and junk JSON each get `{code:-1,msg}` with a message, and the store
 * is unchanged afterwards.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import type { CallOptions } from "./_http_helpers.ts";
import { call, makeTestApp, register, snapshot } from "./_http_helpers.ts";

const BIG = "x".repeat(5000); // TEST_CONFIG.bodyMaxBytes is 4096

interface Case {
  readonly name: string;
  readonly path: string;
  readonly opts: (token: string) => CallOptions;
  readonly status: number;
}

function json(raw: string, token?: string): CallOptions {
  return {
    body: raw,
    headers: {
      "content-type": "application/json",
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
  };
}

const CASES: Case[] = [
  {
    name: "register: missing mobile",
    path: "/user/register",
    opts: () => ({ fields: { passwd: "secret-pass" } }),
    status: 400,
  },
  {
    name: "register: missing passwd",
    path: "/user/register",
    opts: () => ({ fields: { mobile: "139" } }),
    status: 400,
  },
  {
    name: "register: nested mobile",
    path: "/user/register",
    opts: () => ({ fields: { mobile: { a: 1 }, passwd: "secret-pass" } }),
    status: 400,
  },
  {
    name: "register: bad sex",
    path: "/user/register",
    opts: () => ({ fields: { mobile: "139", passwd: "secret-pass", sex: "X" } }),
    status: 400,
  },
  {
    name: "register: long nickname",
    path: "/user/register",
    opts: () => ({ fields: { mobile: "139", passwd: "secret-pass", nickname: "n".repeat(21) } }),
    status: 400,
  },
  {
    name: "register: long memo",
    path: "/user/register",
    opts: () => ({ fields: { mobile: "139", passwd: "secret-pass", memo: "m".repeat(141) } }),
    status: 400,
  },
  {
    name: "register: mobile with spaces",
    path: "/user/register",
    opts: () => ({ fields: { mobile: "1 2", passwd: "secret-pass" } }),
    status: 400,
  },
  {
    name: "register: junk JSON",
    path: "/user/register",
    opts: () => json("{mobile:"),
    status: 400,
  },
  {
    name: "register: oversized",
    path: "/user/register",
    opts: () => ({ fields: { mobile: "139", passwd: "secret-pass", memo: BIG } }),
    status: 413,
  },
  {
    name: "register: text/plain",
    path: "/user/register",
    opts: () => ({ body: "mobile=139", headers: { "content-type": "text/plain" } }),
    status: 415,
  },
  {
    name: "login: missing passwd",
    path: "/user/login",
    opts: () => ({ fields: { mobile: "13800000001" } }),
    status: 400,
  },
  { name: "login: array body", path: "/user/login", opts: () => json("[]"), status: 400 },
  {
    name: "find: missing id",
    path: "/user/find",
    opts: (token) => ({ fields: {}, token }),
    status: 400,
  },
  {
    name: "find: id not a number",
    path: "/user/find",
    opts: (token) => ({ fields: { id: "abc" }, token }),
    status: 400,
  },
  {
    name: "find: id negative",
    path: "/user/find",
    opts: (token) => ({ fields: { id: -1 }, token }),
    status: 400,
  },
  {
    name: "update: bad sex",
    path: "/user/update",
    opts: (token) => ({ fields: { sex: 7 }, token }),
    status: 400,
  },
  {
    name: "update: empty nickname",
    path: "/user/update",
    opts: (token) => ({ fields: { nickname: " " }, token }),
    status: 400,
  },
  {
    name: "update: junk JSON",
    path: "/user/update",
    opts: (token) => json("nope", token),
    status: 400,
  },
  {
    name: "update: oversized",
    path: "/user/update",
    opts: (token) => ({ fields: { memo: BIG }, token }),
    status: 413,
  },
  {
    name: "addfriend: missing dstid",
    path: "/contact/addfriend",
    opts: (token) => ({ fields: {}, token }),
    status: 400,
  },
  {
    name: "addfriend: dstid float",
    path: "/contact/addfriend",
    opts: (token) => ({ fields: { dstid: 1.5 }, token }),
    status: 400,
  },
  {
    name: "addfriend: dstid bool",
    path: "/contact/addfriend",
    opts: (token) => ({ fields: { dstid: true }, token }),
    status: 400,
  },
  {
    name: "addfriend: dstid nested",
    path: "/contact/addfriend",
    opts: (token) => ({ fields: { dstid: [2] }, token }),
    status: 400,
  },
  {
    name: "addfriend: junk JSON",
    path: "/contact/addfriend",
    opts: (token) => json("{", token),
    status: 400,
  },
  {
    name: "addfriend: oversized",
    path: "/contact/addfriend",
    opts: (token) => ({ fields: { dstid: 2, memo: BIG }, token }),
    status: 413,
  },
  {
    name: "addfriend: no token",
    path: "/contact/addfriend",
    opts: () => ({ fields: { dstid: 2 } }),
    status: 401,
  },
  {
    name: "loadfriend: junk JSON",
    path: "/contact/loadfriend",
    opts: (token) => json("}", token),
    status: 400,
  },
  {
    name: "create: missing name",
    path: "/contact/createcommunity",
    opts: (token) => ({ fields: { memo: "m" }, token }),
    status: 400,
  },
  {
    name: "create: blank name",
    path: "/contact/createcommunity",
    opts: (token) => ({ fields: { name: "   " }, token }),
    status: 400,
  },
  {
    name: "create: long name",
    path: "/contact/createcommunity",
    opts: (token) => ({ fields: { name: "n".repeat(31) }, token }),
    status: 400,
  },
  {
    name: "create: cate 5",
    path: "/contact/createcommunity",
    opts: (token) => ({ fields: { name: "g", cate: 5 }, token }),
    status: 400,
  },
  {
    name: "create: cate text",
    path: "/contact/createcommunity",
    opts: (token) => ({ fields: { name: "g", cate: "one" }, token }),
    status: 400,
  },
  {
    name: "create: long memo",
    path: "/contact/createcommunity",
    opts: (token) => ({ fields: { name: "g", memo: "m".repeat(121) }, token }),
    status: 400,
  },
  {
    name: "create: bad icon",
    path: "/contact/createcommunity",
    opts: (token) => ({ fields: { name: "g", icon: "javascript:x" }, token }),
    status: 400,
  },
  {
    name: "create: oversized",
    path: "/contact/createcommunity",
    opts: (token) => ({ fields: { name: "g", memo: BIG }, token }),
    status: 413,
  },
  {
    name: "loadcommunity: junk JSON",
    path: "/contact/loadcommunity",
    opts: (token) => json("[", token),
    status: 400,
  },
  {
    name: "join: missing dstid",
    path: "/contact/joincommunity",
    opts: (token) => ({ fields: {}, token }),
    status: 400,
  },
  {
    name: "join: dstid zero",
    path: "/contact/joincommunity",
    opts: (token) => ({ fields: { dstid: 0 }, token }),
    status: 400,
  },
  {
    name: "join: unknown group",
    path: "/contact/joincommunity",
    opts: (token) => ({ fields: { dstid: 99 }, token }),
    status: 404,
  },
  {
    name: "join: oversized",
    path: "/contact/joincommunity",
    opts: (token) => ({ fields: { dstid: 1, memo: BIG }, token }),
    status: 413,
  },
  {
    name: "upload: junk JSON",
    path: "/attach/upload",
    opts: (token) => json("{", token),
    status: 415,
  },
];

Deno.test("every route answers bad input with {code:-1,msg} and changes nothing", async (t) => {
  await using h = await makeTestApp();
  const a = await register(h.app, "13800000001");
  const b = await register(h.app, "13800000002");
  await call(h.app, "/contact/addfriend", { fields: { dstid: b.id }, token: a.token });
  await call(h.app, "/contact/createcommunity", { fields: { name: "Club" }, token: a.token });
  const before = await snapshot(h.store);
  for (const c of CASES) {
    await t.step(c.name, async () => {
      const r = await call(h.app, c.path, c.opts(a.token));
      strictEqual(r.status, c.status, JSON.stringify(r.body));
      deepStrictEqual(Object.keys(r.body).sort(), ["code", "msg"]);
      strictEqual(r.body.code, -1);
      ok(typeof r.body.msg === "string" && r.body.msg.length > 0);
    });
  }
  strictEqual(await snapshot(h.store), before);
});
