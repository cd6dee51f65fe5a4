/** /user/*: register, login, logout, find, update (S1, S2, S7, S8, L3, L8). */

import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { AbuseLimits, type LimitName } from "../lib/abuse_limits.ts";
import { parseConfig } from "../lib/config.ts";
import { call, makeTestApp, register } from "./_http_helpers.ts";

/** Another user's view: no mobile. */
const PUBLIC_KEYS = ["avatar", "createat", "id", "memo", "nickname", "sex"];
/** The caller's own view. */
const USER_KEYS = [...PUBLIC_KEYS, "mobile"].sort();

Deno.test("/user/register returns the new user with a token and logs the client in by cookie", async () => {
  await using t = await makeTestApp();
  const r = await call(t.app, "/user/register", {
    fields: {
      mobile: "13800000001",
      passwd: "secret-pass",
      nickname: "Ann",
      avatar: "/mnt/a.png",
      sex: "W",
    },
  });
  strictEqual(r.status, 200);
  strictEqual(r.body.code, 0);
  deepStrictEqual(Object.keys(r.body.data).sort(), [...USER_KEYS, "token"].sort());
  strictEqual(r.body.data.nickname, "Ann");
  strictEqual(r.body.data.sex, "W");
  match(r.body.data.createat, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  const cookie = r.headers.get("set-cookie") ?? "";
  match(cookie, new RegExp(`^lanchat_token=${r.body.data.token};`));
  match(cookie, /HttpOnly/);
  match(cookie, /SameSite=Strict/);
  match(cookie, /Path=\//);
  strictEqual(await t.auth.resolveToken(r.body.data.token), r.body.data.id);
});

Deno.test("L3: /user/register keeps memo", async () => {
  await using t = await makeTestApp();
  const r = await call(t.app, "/user/register", {
    fields: { mobile: "13800000001", passwd: "secret-pass", memo: "Hello, I like tea" },
  });
  strictEqual(r.body.data.memo, "Hello, I like tea");
  strictEqual((await t.store.findUser(r.body.data.id))?.memo, "Hello, I like tea");
});

Deno.test("/user/register refuses a taken mobile with 409", async () => {
  await using t = await makeTestApp();
  await register(t.app, "13800000001");
  const r = await call(t.app, "/user/register", {
    fields: { mobile: "13800000001", passwd: "other-pass" },
  });
  strictEqual(r.status, 409);
  strictEqual(r.body.code, -1);
  ok(r.body.msg.length > 0);
});

Deno.test("S8: passwords are stored as PBKDF2 hashes, and empty or short passwords are refused", async () => {
  await using t = await makeTestApp();
  await register(t.app, "13800000001");
  const creds = await t.store.findCredentials("13800000001");
  match(creds?.passwordHash ?? "", /^pbkdf2-sha256\$\d+\$/);
  for (const passwd of ["", "12345"]) {
    const r = await call(t.app, "/user/register", { fields: { mobile: "13800000002", passwd } });
    strictEqual(r.status, 400);
    match(r.body.msg, /Password/);
  }
  const empty = await call(t.app, "/user/register", {
    fields: { mobile: "", passwd: "secret-pass" },
  });
  strictEqual(empty.status, 400);
  strictEqual(empty.body.msg, "Mobile is required");
  strictEqual(await t.store.findCredentials("13800000002"), undefined);
});

Deno.test("S8: /user/login answers an unknown mobile and a wrong password alike", async () => {
  await using t = await makeTestApp();
  await register(t.app, "13800000001");
  const wrong = await call(t.app, "/user/login", {
    fields: { mobile: "13800000001", passwd: "bad-pass" },
    form: true,
  });
  const unknown = await call(t.app, "/user/login", {
    fields: { mobile: "13900000000", passwd: "bad-pass" },
    form: true,
  });
  strictEqual(wrong.status, 401);
  deepStrictEqual(wrong.body, unknown.body);
  strictEqual(wrong.status, unknown.status);
  strictEqual(wrong.headers.get("set-cookie"), null);
});

Deno.test("/user/login with a form body returns the user, a new token and the cookie", async () => {
  await using t = await makeTestApp();
  const { id, token: first } = await register(t.app, "13800000001");
  const r = await call(t.app, "/user/login", {
    fields: { mobile: "13800000001", passwd: "secret-pass" },
    form: true,
  });
  strictEqual(r.status, 200);
  strictEqual(r.body.data.id, id);
  ok(r.body.data.token !== first);
  match(r.headers.get("set-cookie") ?? "", /^lanchat_token=.+HttpOnly/);
  strictEqual(await t.auth.resolveToken(first), id, "an older session stays valid");
});

Deno.test("L8: a password with & = + # survives form registration and JSON login", async () => {
  await using t = await makeTestApp();
  const passwd = "a&b=c+d#e %20x";
  const reg = await call(t.app, "/user/register", {
    fields: { mobile: "13800000001", passwd },
    form: true,
  });
  strictEqual(reg.body.code, 0);
  const login = await call(t.app, "/user/login", { fields: { mobile: "13800000001", passwd } });
  strictEqual(login.body.code, 0);
  const truncated = await call(t.app, "/user/login", {
    fields: { mobile: "13800000001", passwd: "a" },
  });
  strictEqual(truncated.status, 401);
});

Deno.test("S7: /user/logout revokes the token and clears the cookie", async () => {
  await using t = await makeTestApp();
  const { token } = await register(t.app, "13800000001");
  const out = await call(t.app, "/user/logout", { headers: { cookie: `lanchat_token=${token}` } });
  strictEqual(out.body.code, 0);
  match(out.headers.get("set-cookie") ?? "", /^lanchat_token=;.*Max-Age=0/);
  strictEqual(await t.auth.resolveToken(token), undefined);
  const after = await call(t.app, "/user/find", { fields: { id: 1 }, token });
  strictEqual(after.status, 401);
  strictEqual((await call(t.app, "/user/logout")).body.code, 0, "logging out twice is fine");
});

Deno.test("S1: /user/find needs a login and never returns a token, hash or salt", async () => {
  await using t = await makeTestApp();
  const a = await register(t.app, "13800000001");
  const b = await register(t.app, "13800000002", { memo: "bee", nickname: "Bee" });
  const anonymous = await call(t.app, "/user/find", { fields: { id: b.id } });
  strictEqual(anonymous.status, 401);
  strictEqual(anonymous.body.code, -1);
  const r = await call(t.app, "/user/find", { fields: { id: b.id }, token: a.token });
  strictEqual(r.body.code, 0);
  deepStrictEqual(Object.keys(r.body.data).sort(), PUBLIC_KEYS);
  const text = JSON.stringify(r.body);
  ok(!text.includes(b.token) && !/token|passw|hash|salt|13800000002/i.test(text), text);
  strictEqual(r.body.data.memo, "bee");
  const viaGet = await call(t.app, `/user/find?id=${b.id}`, { method: "GET", token: a.token });
  deepStrictEqual(viaGet.body, r.body);
  const missing = await call(t.app, "/user/find", { fields: { id: 999 }, token: a.token });
  strictEqual(missing.status, 404);
});

Deno.test("S1: a user's mobile is shown to that user only, never to another user who finds them", async () => {
  await using t = await makeTestApp();
  const a = await register(t.app, "13800000001");
  const b = await register(t.app, "13800000002", { nickname: "Bee" });
  const login = await call(t.app, "/user/login", {
    fields: { mobile: "13800000002", passwd: "secret-pass" },
  });
  const update = await call(t.app, "/user/update", { fields: { memo: "hi" }, token: b.token });
  const self = await call(t.app, "/user/find", { fields: { id: b.id }, token: b.token });
  for (
    const [name, r] of [["login", login], ["update", update], ["find yourself", self]] as const
  ) {
    strictEqual(r.body.data.mobile, "13800000002", name);
  }
  const other = await call(t.app, "/user/find", { fields: { id: b.id }, token: a.token });
  strictEqual(other.body.code, 0);
  strictEqual(other.body.data.nickname, "Bee");
  ok(!("mobile" in other.body.data), JSON.stringify(other.body));
  ok(!JSON.stringify(other.body).includes("13800000002"), "nor anywhere else in the answer");
});

Deno.test("S1: a user registered without a nickname (it defaults to the mobile) shows others 'User <id>', not the number", async () => {
  await using t = await makeTestApp();
  const a = await register(t.app, "13800000001");
  const r = await call(t.app, "/user/register", {
    fields: { mobile: "13900000009", passwd: "secret-pass" },
  });
  strictEqual(r.body.code, 0);
  const id = r.body.data.id;
  strictEqual(r.body.data.nickname, "13900000009", "the owner sees the default as it is");
  const found = await call(t.app, "/user/find", { fields: { id }, token: a.token });
  strictEqual(found.body.data.nickname, `User ${id}`);
  const added = await call(t.app, "/contact/addfriend", { fields: { dstid: id }, token: a.token });
  const friends = await call(t.app, "/contact/loadfriend", { fields: {}, token: a.token });
  for (const answer of [found, added, friends]) {
    ok(!JSON.stringify(answer.body).includes("13900000009"), JSON.stringify(answer.body));
  }
  strictEqual(friends.body.rows?.[0]?.nickname, `User ${id}`);
});

Deno.test("/user/find answers 429 with Retry-After past the per-user lookup rate; finding yourself is free", async () => {
  const seen: LimitName[] = [];
  const limits = new AbuseLimits({ ...parseConfig({}), lookupRate: 3 }, {
    now: () => 1_700_000_000_000,
    onLimited: (l) => seen.push(l),
  });
  await using t = await makeTestApp({ extra: { limits } });
  const a = await register(t.app, "13800000001");
  const b = await register(t.app, "13800000002");
  const find = (id: number, token: string) => call(t.app, "/user/find", { fields: { id }, token });
  strictEqual((await find(b.id, a.token)).status, 200);
  strictEqual((await find(999, a.token)).status, 404, "an unknown id counts too");
  strictEqual((await find(b.id, a.token)).status, 200);
  for (let i = 0; i < 5; i++) strictEqual((await find(a.id, a.token)).status, 200, "yourself");
  const r = await find(b.id, a.token);
  strictEqual(r.status, 429);
  deepStrictEqual(r.body, { code: -1, msg: "Too many user lookups, retry in 20 s" });
  strictEqual(r.headers.get("retry-after"), "20", "3 a minute: one back every 20 s");
  strictEqual((await find(a.id, b.token)).status, 200, "per user: B is not limited");
  deepStrictEqual(seen, ["lookup"]);
});

Deno.test("/user/find past the lookup rate still answers for a friend or someone in a group with the caller, not for a stranger", async () => {
  const limits = new AbuseLimits({ ...parseConfig({}), lookupRate: 1 }, {
    now: () => 1_700_000_000_000,
  });
  await using t = await makeTestApp({ extra: { limits } });
  const a = await register(t.app, "13800000001");
  const [b, c, friend, stranger] = [
    await register(t.app, "13800000002"),
    await register(t.app, "13800000003"),
    await register(t.app, "13800000004"),
    await register(t.app, "13800000005"),
  ];
  // B owns a group A and C are in; A and C are not friends. A and `friend` are.
  const g = await call(t.app, "/contact/createcommunity", {
    fields: { name: "g" },
    token: b.token,
  });
  for (const who of [a, c]) {
    await call(t.app, "/contact/joincommunity", {
      fields: { dstid: g.body.data.id },
      token: who.token,
    });
  }
  await t.store.addFriendship(a.id, friend.id, 1);
  const find = (id: number) => call(t.app, "/user/find", { fields: { id }, token: a.token });
  strictEqual((await find(stranger.id)).status, 200, "the one lookup the rate allows");
  strictEqual((await find(stranger.id)).status, 429, "a stranger, past the rate");
  strictEqual((await find(c.id)).status, 200, "a member of a group A is in");
  strictEqual((await find(b.id)).status, 200, "the group's owner");
  strictEqual((await find(friend.id)).status, 200, "a friend");
  strictEqual((await find(999)).status, 429, "an unknown id, past the rate");
});

Deno.test("the token is accepted from the Bearer header, the cookie and the old token field", async (t) => {
  await using h = await makeTestApp();
  const { id, token } = await register(h.app, "13800000001");
  const ways = [
    { name: "bearer", opts: { token, fields: { id } } },
    {
      name: "cookie",
      opts: { headers: { cookie: `x=1; lanchat_token=${token}` }, fields: { id } },
    },
    { name: "token field (form)", opts: { fields: { id, token, userid: id }, form: true } },
    { name: "token in the query", opts: { fields: { id } }, query: `?token=${token}` },
  ];
  for (const way of ways) {
    await t.step(way.name, async () => {
      const r = await call(h.app, `/user/find${way.query ?? ""}`, way.opts);
      strictEqual(r.body.code, 0, JSON.stringify(r.body));
      strictEqual(r.body.data.id, id);
    });
  }
  await t.step("a bad token is refused", async () => {
    // Another first character (the token is random: "x" + the rest was the token itself 1 in 64).
    const bad = (token[0] === "x" ? "y" : "x") + token.slice(1);
    const r = await call(h.app, "/user/find", { token: bad, fields: { id } });
    strictEqual(r.status, 401);
  });
});

Deno.test("/user/update changes the caller's own profile only", async () => {
  await using t = await makeTestApp();
  const a = await register(t.app, "13800000001");
  const b = await register(t.app, "13800000002");
  const r = await call(t.app, "/user/update", {
    fields: { nickname: "Zed", memo: "new memo", sex: "M" },
    token: a.token,
  });
  strictEqual(r.body.code, 0);
  strictEqual(r.body.data.nickname, "Zed");
  strictEqual((await t.store.findUser(a.id))?.memo, "new memo");
  const spoof = await call(t.app, "/user/update", {
    fields: { nickname: "Pwned", userid: b.id },
    token: a.token,
  });
  strictEqual(spoof.status, 403);
  strictEqual((await t.store.findUser(b.id))?.nickname, "n13800000002");
  const bad = await call(t.app, "/user/update", {
    fields: { avatar: "javascript:alert(1)" },
    token: a.token,
  });
  strictEqual(bad.status, 400);
  const none = await call(t.app, "/user/update", { fields: {}, token: a.token });
  strictEqual(none.status, 400);
});

Deno.test("S7: an expired token is refused by the routes", async () => {
  let clock = 1_700_000_000_000;
  await using t = await makeTestApp({ now: () => clock, config: { tokenTtlSeconds: 60 } });
  const { id, token } = await register(t.app, "13800000001");
  strictEqual((await call(t.app, "/user/find", { fields: { id }, token })).status, 200);
  clock += 61_000;
  const r = await call(t.app, "/user/find", { fields: { id }, token });
  strictEqual(r.status, 401);
  strictEqual(r.body.msg, "Login expired or invalid, please log in again");
});

Deno.test("look-alike names are refused for new values: full-width mobiles, hidden or reordering characters in names", async (t) => {
  await using app = await makeTestApp();
  const a = await register(app.app, "13800000031");
  await t.step(
    "a full-width mobile gets 400 naming its plain form; the plain one registers",
    async () => {
      const r = await call(app.app, "/user/register", {
        fields: { mobile: "１３８００００００３１", passwd: "secret-pass" },
      });
      strictEqual(r.status, 400);
      match(r.body.msg, /plain characters: "13800000031"/);
      strictEqual(await app.store.findCredentials("１３８００００００３１"), undefined);
    },
  );
  await t.step(
    "a mobile of blank-looking letters gets 400 (it is the nickname when none is given)",
    async () => {
      const r = await call(app.app, "/user/register", {
        fields: { mobile: "\u115f\u115f", passwd: "secret-pass" },
      });
      strictEqual(r.status, 400);
      match(r.body.msg, /Mobile must not hold characters that render as blanks/);
      strictEqual(await app.store.findCredentials("\u115f\u115f"), undefined);
    },
  );
  await t.step("an account stored with one before still logs in", async () => {
    await app.store.createUser({
      mobile: "１３９",
      passwordHash: await app.auth.hashPassword("secret-pass"),
      nickname: "old",
      avatar: "",
      sex: "U",
      memo: "",
    }, Date.now());
    const r = await call(app.app, "/user/login", {
      fields: { mobile: "１３９", passwd: "secret-pass" },
    });
    strictEqual(r.body.code, 0);
  });
  const unsafe = [
    ["a right-to-left override", "Bob\u202Egnp.exe"],
    ["a bidi isolate", "\u2067Bob"],
    ["a zero-width space", "Al\u200Bice"],
    ["a byte-order mark", "Ali\uFEFFce"],
    ["a soft hyphen", "Al\u00ADice"],
    ["a line break", "Alice\nSystem"],
    ["a C1 control", "Ali\u0085ce"],
    ["a line separator", "Alice\u2028Bob"],
    ["a Hangul filler (looks empty)", "\u3164"],
    ["a braille blank", "Al\u2800ice"],
    ["a left-to-right mark", "Alice\u200E"],
    ["a stray tag character", "Alice\u{E0041}"],
  ] as const;
  for (const [what, value] of unsafe) {
    await t.step(`${what} in a nickname or group name gets 400`, async () => {
      const reg = await call(app.app, "/user/register", {
        fields: { mobile: "13800000032", passwd: "secret-pass", nickname: value },
      });
      strictEqual(reg.status, 400, what);
      const upd = await call(app.app, "/user/update", {
        fields: { nickname: value },
        token: a.token,
      });
      strictEqual(upd.status, 400, what);
      match(upd.body.msg, /Field "nickname" contains (line breaks, invisible|control)/);
      const group = await call(app.app, "/contact/createcommunity", {
        fields: { name: value },
        token: a.token,
      });
      strictEqual(group.status, 400, what);
    });
  }
  await t.step("emoji with joiners, accents and right-to-left scripts are names", async () => {
    const england = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}";
    for (const nickname of ["👩‍💻 Ada", "Zoë", "مريم", "שרה", "李雷", `${england} fan`, "❤️ Bo"]) {
      const r = await call(app.app, "/user/update", { fields: { nickname }, token: a.token });
      strictEqual(r.body.code, 0, nickname);
      strictEqual(r.body.data.nickname, nickname);
    }
  });
  await t.step("a memo keeps its line breaks but not C1 controls", async () => {
    const ok2 = await call(app.app, "/user/update", {
      fields: { memo: "line one\nline two" },
      token: a.token,
    });
    strictEqual(ok2.body.code, 0);
    const c1 = await call(app.app, "/user/update", {
      fields: { memo: "x\u009By" },
      token: a.token,
    });
    strictEqual(c1.status, 400);
  });
});
