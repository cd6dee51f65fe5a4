/**
 * Fuzzing the REST API: 100,000 generated bad forms and JSON bodies go
 * through `app.fetch` with real Requests, spread over every route. Each must
 * be answered with a 4xx and `{code: -1, msg}` (never a 500), and the store
 * (SQLite) must hold exactly what it held before.
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { LocalBus } from "../../lib/bus_local.ts";
import { ChatService } from "../../lib/chat_service.ts";
import { chatRoutes } from "../../lib/http/chat_route.ts";
import { makeTestApp, register, snapshot } from "../_http_helpers.ts";
import { catchPrinted } from "../_printed.ts";
import { deepJson, NASTY_CHARS, Rng, SEED, TRAVERSALS } from "./_fuzz.ts";

const COUNT = 100_000;

/** One generated request and what it is meant to break. */
interface Case {
  readonly what: string;
  readonly request: Request;
}

interface Fixture {
  readonly token: string;
  readonly id: number;
}

const BASE = "http://127.0.0.1";
const POST_ROUTES = [
  "/user/register",
  "/user/login",
  "/user/logout",
  "/user/find",
  "/user/update",
  "/contact/addfriend",
  "/contact/loadfriend",
  "/contact/createcommunity",
  "/contact/loadcommunity",
  "/contact/joincommunity",
] as const;
/** Routes that answer 401 without a valid login. */
const LOGIN_ROUTES = POST_ROUTES.filter((r) => !/register|login|logout/.test(r));

/** Field values that are invalid for every field they are put in below. */
function badId(rng: Rng): string {
  return rng.pick([
    "",
    " ",
    "0",
    "-1",
    "1.5",
    "1e3x",
    "abc",
    "１",
    "0x10",
    "99999999999999999999",
  ]) +
    (rng.next() < 0.2 ? rng.pick(NASTY_CHARS) : "");
}

/** A body that no route accepts, whatever its fields. */
function badBody(rng: Rng): { body: BodyInit; type: string; what: string } {
  const enc = new TextEncoder();
  switch (rng.int(8)) {
    case 0:
      return {
        body: rng.pick(["{", "{'a':1}", "[1,", "nul", '{"a":1}}', rng.text(30)]),
        type: "application/json",
        what: "junk JSON",
      };
    case 1:
      return {
        body: rng.pick(["[]", "1", '"s"', "true", "[{}]"]),
        type: "application/json",
        what: "JSON not an object",
      };
    case 2:
      return {
        body: JSON.stringify({ mobile: "1", passwd: rng.pick([{}, [], [1], { a: [] }]) }),
        type: "application/json",
        what: "nested value",
      };
    case 3:
      return {
        body: `{"a":${deepJson(10 + rng.int(1500), rng.next() < 0.5)}}`,
        type: "application/json",
        what: "deep nesting",
      };
    case 4:
      return {
        body: "mobile=" + "9".repeat(4097 + rng.int(20_000)),
        type: rng.pick(["application/x-www-form-urlencoded", "application/json"]),
        what: "oversized",
      };
    case 5:
      return {
        body: rng.pick(["a=1", "<x/>", "{}", "mobile=1&passwd=123456"]),
        type: rng.pick(["text/plain", "application/xml", "multipart/form-data", "", "foo/bar"]),
        what: "wrong content type",
      };
    case 6:
      return {
        body: new Uint8Array([...enc.encode('{"mobile":"'), 0xff, 0xc0, 0xaf, ...enc.encode('"}')]),
        type: rng.pick(["application/json", "application/x-www-form-urlencoded"]),
        what: "invalid UTF-8",
      };
    default:
      return {
        body: JSON.stringify({ mobile: "1", passwd: 1e400 === Infinity ? "x" : "" }).replace(
          '"x"',
          rng.pick(["NaN", "Infinity", "-", "1e99999", "undefined"]),
        ),
        type: "application/json",
        what: "non-JSON number",
      };
  }
}

/** Fields that break one validation rule of `route` (sent with a valid login where needed). */
function badFields(rng: Rng, route: string, fx: Fixture): Record<string, string> {
  const long = (n: number) => rng.pick(["x", "中", "😀", "é"]).repeat(n);
  const ctrl = () => `a${rng.pick(["\u0000", "\u0001", "\u001b", "\u007f"])}b`;
  switch (route) {
    case "/user/register":
      return rng.pick([
        { mobile: "", passwd: "secret-pass" },
        { mobile: rng.pick([" ", "a b", "<x>", "a/b", long(21), ...TRAVERSALS]), passwd: "123456" },
        { mobile: "13900000099", passwd: rng.pick(["", "12345", "中中中"]) },
        { mobile: "13900000099", passwd: "p".repeat(129) },
        { mobile: "13900000099", passwd: "123456", nickname: long(21) },
        { mobile: "13900000099", passwd: "123456", nickname: ctrl() },
        {
          mobile: "13900000099",
          passwd: "123456",
          avatar: rng.pick(["javascript:x", "a b", "<x>"]),
        },
        { mobile: "13900000099", passwd: "123456", sex: rng.pick(["X", "male", "0"]) },
        { mobile: "13900000099", passwd: "123456", memo: long(141) },
        { mobile: "13900000001", passwd: "secret-pass" }, // taken
      ]);
    case "/user/login":
      return rng.pick([
        { mobile: "", passwd: "x" },
        { mobile: "13900000001", passwd: "" },
        { mobile: "13900000001", passwd: rng.pick(["wrong-pass", "secret-pasS", "p".repeat(128)]) },
        { mobile: rng.pick(["nobody", "13900000099"]), passwd: "secret-pass" },
        { mobile: rng.pick(TRAVERSALS), passwd: "secret-pass" },
      ]);
    case "/user/find":
      return rng.pick([{ id: badId(rng) }, { id: "999999" }, {}]);
    case "/user/update":
      return rng.pick([
        {},
        { nickname: "" },
        { nickname: long(21) },
        { memo: ctrl() },
        { avatar: rng.pick(["javascript:alert(1)", "a b", "<x>", "/a\\b", "data:x"]) },
        { sex: rng.pick(["X", "?", "MM"]) },
        { memo: long(141) },
      ]);
    case "/contact/addfriend":
      return rng.pick([{ dstid: badId(rng) }, { dstid: String(fx.id) }, { dstid: "999999" }, {}]);
    case "/contact/createcommunity":
      return rng.pick([
        {},
        { name: "" },
        { name: long(31) },
        { name: "g", cate: rng.pick(["5", "-1", "x", "1.0", "10"]) },
        { name: "g", icon: rng.pick(["javascript:x", "a b"]) },
        { name: "g", memo: long(121) },
        { name: ctrl() },
      ]);
    case "/contact/joincommunity":
      return rng.pick([{ dstid: badId(rng) }, { dstid: "999999" }, {}]);
    default:
      return {};
  }
}

function post(path: string, body: BodyInit, type: string, token?: string): Request {
  const headers = new Headers();
  if (type !== "") headers.set("content-type", type);
  if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
  return new Request(BASE + path, { method: "POST", headers, body });
}

function generate(rng: Rng, fx: Fixture): Case {
  const route = rng.pick(POST_ROUTES);
  const login = LOGIN_ROUTES.includes(route as typeof LOGIN_ROUTES[number]);
  switch (rng.int(7)) {
    case 0: { // a body no route accepts
      const b = badBody(rng);
      return { what: `${route} ${b.what}`, request: post(route, b.body, b.type, fx.token) };
    }
    case 1:
    case 2: { // fields that break a rule, as JSON or as a form
      const r = route === "/user/logout" || route.startsWith("/contact/load")
        ? rng.pick(LOGIN_ROUTES.filter((x) => !x.includes("load")))
        : route;
      const fields = badFields(rng, r, fx);
      const form = rng.next() < 0.5;
      const body = form ? new URLSearchParams(fields).toString() : JSON.stringify(fields);
      const type = form ? "application/x-www-form-urlencoded" : "application/json";
      const needs = LOGIN_ROUTES.includes(r as typeof LOGIN_ROUTES[number]);
      return {
        what: `${r} ${body.slice(0, 80)}`,
        request: post(r, body, type, needs ? fx.token : undefined),
      };
    }
    case 3: { // no login, or a made-up one, on a route that needs one
      const r = login ? route : rng.pick(LOGIN_ROUTES);
      const token = rng.pick([
        "",
        "x",
        "null",
        fx.token.slice(0, -1),
        fx.token + "x",
        "a".repeat(300),
      ]);
      const inField = rng.next() < 0.5;
      const fields = {
        ...badFields(rng, r, fx),
        ...(inField ? { token: token + rng.pick(NASTY_CHARS) } : {}),
      };
      const req = post(r, JSON.stringify(fields), "application/json", inField ? undefined : token);
      if (rng.next() < 0.3) req.headers.set("cookie", `lanchat_token=${encodeURIComponent(token)}`);
      return { what: `${r} bad token`, request: req };
    }
    case 4: { // paths that are not routes, traversal and wrong methods
      const path = rng.pick([
        `/mnt/${encodeURIComponent(rng.pick(TRAVERSALS))}`,
        `/mnt/${rng.pick(TRAVERSALS)}`,
        `/asset/${rng.pick(TRAVERSALS)}`,
        `/asset/..%2f..%2f${rng.pick(["deno.json", "main.ts", "data/chat.db"])}`,
        `/user/${rng.pick(TRAVERSALS)}.shtml`,
        `/chat/..%2f..%2fmain.ts`,
        `/mnt/${"0".repeat(32)}.png`,
        // deno-lint-ignore no-control-regex
        `/x${rng.text(5).replace(/[\u0000-\u001f?#]/g, "")}`,
      ]);
      let url: URL;
      try {
        url = new URL(BASE + path);
      } catch {
        url = new URL(BASE + "/nope");
      }
      // "/" redirects to the login page on purpose; a random path can normalise to it.
      if (url.pathname === "/") url = new URL(BASE + "/nope");
      const method = rng.pick(["GET", "GET", "DELETE", "PUT", "PATCH"]);
      return { what: `${method} ${url.pathname}`, request: new Request(url, { method }) };
    }
    case 5: { // a route with the wrong method
      return {
        what: `wrong method ${route}`,
        request: new Request(BASE + route, { method: rng.pick(["PUT", "DELETE", "PATCH"]) }),
      };
    }
    default: { // history with bad parameters, and /chat without an upgrade
      const q = rng.pick([
        `conv=${encodeURIComponent(rng.pick(["", "u:2:1", "x", "g:0", ...TRAVERSALS]))}`,
        `peer=${badId(rng)}`,
        `group=${badId(rng)}`,
        `peer=${fx.id}`,
        `conv=g:1&before=5&after=2`,
        `conv=g:1&limit=${rng.pick(["0", "-1", "x", "100000"])}`,
        "",
      ]);
      const path = rng.next() < 0.9 ? `/message/history?${q}` : `/chat?${q}`;
      const headers = rng.next() < 0.2 ? {} : { authorization: `Bearer ${fx.token}` };
      return { what: `GET ${path}`, request: new Request(BASE + path, { headers }) };
    }
  }
}

Deno.test(
  `REST fuzz: ${COUNT} bad requests on every route get a 4xx {code:-1,msg}, the store is unchanged (seed ${SEED})`,
  async () => {
    await using t = await makeTestApp({ store: "sqlite" });
    const bus = new LocalBus();
    const chat = new ChatService({ store: t.store, bus, allowStrangers: false, session: {} });
    const { app, store } = t;
    app.route("/", chatRoutes({ chat, auth: t.auth, config: { origins: [] } }));
    // Nothing may print around the logs (a NUL in a path once reached
    // Deno.open inside Hono's adapter, which printed the TypeError).
    using printed = catchPrinted();
    try {
      const a = await register(app, "13900000001");
      await register(app, "13900000002");
      const fx: Fixture = { token: a.token, id: a.id };
      const before = await snapshot(store);
      const rng = new Rng(SEED);
      const failures: string[] = [];
      const statuses = new Map<number, number>();
      for (let i = 0; i < COUNT; i++) {
        const { what, request } = generate(rng, fx);
        const res = await app.fetch(request);
        const text = await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        let body: { code?: unknown; msg?: unknown } | undefined;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const good = res.status >= 400 && res.status < 500 && body?.code === -1 &&
          typeof body.msg === "string" && body.msg !== "";
        if (!good && failures.length < 10) {
          failures.push(`#${i} ${what} → ${res.status} ${text.slice(0, 120)}`);
        }
      }
      deepStrictEqual(failures, [], `seed ${SEED}`);
      printed.assertNone(`seed ${SEED}`);
      strictEqual(statuses.get(500) ?? 0, 0);
      strictEqual(await snapshot(store), before, `seed ${SEED}: the store is unchanged`);
      // The fixture's login still works: nothing revoked it or broke its row.
      const find = await app.fetch(
        new Request(`${BASE}/user/find?id=${fx.id}`, {
          headers: { authorization: `Bearer ${fx.token}` },
        }),
      );
      strictEqual(find.status, 200);
      await find.body?.cancel();
    } finally {
      chat.close();
      await bus.close();
    }
  },
);
