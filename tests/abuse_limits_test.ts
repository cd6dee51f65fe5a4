/**
 * The abuse limits: settings, the AbuseLimits decisions on a hand-driven
 * clock, client addresses behind trusted proxies, the per-session message
 * rate, and the HTTP answers (429 with Retry-After, 422 for the quota).
 */

import { deepStrictEqual, match, ok, strictEqual, throws } from "node:assert/strict";
import {
  AbuseLimits,
  type AbuseSettings,
  clientAddress,
  type LimitName,
  peerAddress,
  viaHttps,
} from "../lib/abuse_limits.ts";
import { ConfigError, parseConfig } from "../lib/config.ts";
import { LimitError, RateLimitError } from "../lib/errors.ts";
import { Session } from "../lib/session.ts";
import { FakeConnection, ManualTimers } from "./_chat_helpers.ts";
import { call, makeTestApp, register } from "./_http_helpers.ts";

const TIGHT: AbuseSettings = {
  msgRate: 5,
  connectRate: 3,
  userConnections: 2,
  loginAttempts: 3,
  loginIpAttempts: 5,
  registerIpAttempts: 2,
  lookupRate: 3,
  friendAdds: 2,
  groupJoins: 2,
  uploadQuotaBytes: 100,
  trustedProxies: [],
};

function limitsAt(settings: Partial<AbuseSettings> = {}) {
  let t = 1_000_000;
  const seen: LimitName[] = [];
  const limits = new AbuseLimits({ ...TIGHT, ...settings }, {
    now: () => t,
    onLimited: (l) => seen.push(l),
  });
  return { limits, seen, advance: (ms: number) => void (t += ms) };
}

Deno.test("the limit settings have generous defaults and refuse bad values by name", async (t) => {
  await t.step("defaults", () => {
    const c = parseConfig({});
    deepStrictEqual(
      [
        c.msgRate,
        c.connectRate,
        c.userConnections,
        c.loginAttempts,
        c.loginIpAttempts,
        c.registerIpAttempts,
        c.lookupRate,
        c.friendAdds,
        c.groupJoins,
        c.uploadQuotaBytes,
        c.uploadConcurrency,
        c.trustedProxies,
      ],
      [100, 6000, 32, 10, 100, 10, 120, 100, 60, 1024 ** 3, 4, []],
    );
  });
  await t.step("set from the environment", () => {
    const c = parseConfig({
      CHAT_MSG_RATE: "7",
      CHAT_CONNECT_RATE: "8",
      CHAT_USER_CONNECTIONS: "9",
      CHAT_LOGIN_ATTEMPTS: "4",
      CHAT_LOGIN_IP_ATTEMPTS: "40",
      CHAT_REGISTER_IP_ATTEMPTS: "3",
      CHAT_LOOKUP_RATE: "11",
      CHAT_FRIEND_ADDS: "12",
      CHAT_GROUP_JOINS: "13",
      CHAT_UPLOAD_QUOTA_BYTES: "5000",
      CHAT_UPLOAD_CONCURRENCY: "2",
      CHAT_TRUSTED_PROXIES: "127.0.0.1, ::1",
    });
    deepStrictEqual(
      [c.msgRate, c.connectRate, c.userConnections, c.loginAttempts, c.loginIpAttempts],
      [7, 8, 9, 4, 40],
    );
    strictEqual(c.registerIpAttempts, 3);
    deepStrictEqual([c.lookupRate, c.friendAdds, c.groupJoins], [11, 12, 13]);
    strictEqual(c.uploadQuotaBytes, 5000);
    strictEqual(c.uploadConcurrency, 2);
    deepStrictEqual(c.trustedProxies, ["127.0.0.1", "::1"]);
  });
  for (
    const [name, value] of [
      ["CHAT_MSG_RATE", "0"],
      ["CHAT_CONNECT_RATE", "fast"],
      ["CHAT_USER_CONNECTIONS", "-1"],
      ["CHAT_LOGIN_ATTEMPTS", "1.5"],
      ["CHAT_LOGIN_IP_ATTEMPTS", "0"],
      ["CHAT_REGISTER_IP_ATTEMPTS", "many"],
      ["CHAT_LOOKUP_RATE", "0"],
      ["CHAT_FRIEND_ADDS", "ten"],
      ["CHAT_GROUP_JOINS", "-3"],
      ["CHAT_UPLOAD_QUOTA_BYTES", "0"],
      ["CHAT_UPLOAD_CONCURRENCY", "0"],
      ["CHAT_TRUSTED_PROXIES", "proxy.lan"],
    ] as const
  ) {
    await t.step(`${name}=${value} is refused`, () => {
      throws(
        () => parseConfig({ [name]: value }),
        (e) => e instanceof ConfigError && e.setting === name,
      );
    });
  }
});

Deno.test("connections per address: the burst passes, the next gets a 429 error with a retry hint", () => {
  const { limits, seen, advance } = limitsAt();
  for (let i = 0; i < 3; i++) limits.connect("10.0.0.1");
  throws(() => limits.connect("10.0.0.1"), (e) => {
    ok(e instanceof RateLimitError);
    strictEqual(e.status, 429);
    strictEqual(e.retryAfterSeconds, 20, "3 a minute: one back every 20 s");
    match(e.message, /Too many connections from your address, retry in 20 s/);
    return true;
  });
  limits.connect("10.0.0.2");
  advance(20_000);
  limits.connect("10.0.0.1");
  deepStrictEqual(seen, ["connect_ip"]);
});

Deno.test("open sockets per user are capped and slots come back on release", () => {
  const { limits, seen } = limitsAt();
  limits.acquireSocket(1);
  limits.acquireSocket(1);
  throws(
    () => limits.acquireSocket(1),
    (e) => e instanceof RateLimitError && /at most 2/.test(e.message),
  );
  limits.acquireSocket(2);
  limits.releaseSocket(1);
  limits.acquireSocket(1);
  strictEqual(limits.socketsOf(1), 2);
  deepStrictEqual(seen, ["user_connections"]);
});

Deno.test("failed logins are throttled per mobile and per address, alike for unknown mobiles", () => {
  const { limits, seen, advance } = limitsAt();
  const refused = (mobile: string, ip: string) => {
    try {
      limits.checkLogin(mobile, ip);
      return undefined;
    } catch (e) {
      ok(e instanceof RateLimitError);
      return e.message;
    }
  };
  for (let i = 0; i < 3; i++) {
    strictEqual(refused("13800000001", "10.0.0.1"), undefined);
    limits.loginFailed("13800000001", "10.0.0.1");
  }
  const msg = refused("13800000001", "10.0.0.9");
  strictEqual(msg, "Too many login attempts, retry in 300 s", "per mobile, from any address");
  strictEqual(
    refused("13800000002", "10.0.0.1"),
    undefined,
    "another mobile from the same address",
  );
  limits.loginFailed("19999999999", "10.0.0.1");
  limits.loginFailed("19999999998", "10.0.0.1");
  strictEqual(
    refused("13800000003", "10.0.0.1"),
    "Too many login attempts, retry in 180 s",
    "per address after 5 failures in all (5 per 15 minutes: one back every 180 s)",
  );
  advance(300_000);
  strictEqual(refused("13800000001", "10.0.0.2"), undefined, "one attempt back after 300 s");
  limits.loginSucceeded("13800000001");
  strictEqual(seen.filter((s) => s === "login").length, 2);
});

Deno.test("user lookups, friend adds and group joins are counted per user and refill over time", async (t) => {
  const cases = [
    { name: "lookups: 3 a minute", take: "lookup", limit: "lookup", burst: 3, wait: 20 },
    {
      name: "friend adds: 2 an hour",
      take: "friendAdd",
      limit: "friend_add",
      burst: 2,
      wait: 1800,
    },
    {
      name: "group joins: 2 an hour",
      take: "groupJoin",
      limit: "group_join",
      burst: 2,
      wait: 1800,
    },
  ] as const;
  for (const c of cases) {
    await t.step(c.name, () => {
      const { limits, seen, advance } = limitsAt();
      for (let i = 0; i < c.burst; i++) limits[c.take](1);
      throws(() => limits[c.take](1), (e) => {
        ok(e instanceof RateLimitError);
        strictEqual(e.status, 429);
        strictEqual(e.retryAfterSeconds, c.wait);
        match(e.message, new RegExp(`, retry in ${c.wait} s$`));
        return true;
      });
      limits[c.take](2);
      advance(c.wait * 1000);
      limits[c.take](1);
      deepStrictEqual(seen, [c.limit]);
    });
  }
});

Deno.test("the upload quota counts stored bytes plus the new file", () => {
  const { limits, seen } = limitsAt();
  limits.checkUploadQuota(0, 100);
  limits.checkUploadQuota(60, 40);
  throws(() => limits.checkUploadQuota(60, 41), (e) => {
    ok(e instanceof LimitError);
    strictEqual(e.status, 422);
    match(
      e.message,
      /Upload quota of 100 bytes reached \(60 bytes stored or uploading\); .*ask an admin/,
    );
    return true;
  });
  deepStrictEqual(seen, ["upload_quota"]);
});

Deno.test("the client address is the peer's unless the peer is a trusted proxy", async (t) => {
  const h = (xff?: string) => new Headers(xff === undefined ? {} : { "x-forwarded-for": xff });
  const cases: [string, string, Headers, string[], string][] = [
    ["no proxies: the header is ignored", "10.0.0.5", h("1.2.3.4"), [], "10.0.0.5"],
    ["untrusted peer: the header is ignored", "10.0.0.5", h("1.2.3.4"), ["10.0.0.1"], "10.0.0.5"],
    ["trusted peer: the client it saw", "10.0.0.1", h("1.2.3.4"), ["10.0.0.1"], "1.2.3.4"],
    [
      "a spoofed left entry is skipped",
      "10.0.0.1",
      h("6.6.6.6, 1.2.3.4"),
      ["10.0.0.1"],
      "1.2.3.4",
    ],
    [
      "chained trusted proxies are skipped",
      "10.0.0.1",
      h("1.2.3.4, 10.0.0.2"),
      ["10.0.0.1", "10.0.0.2"],
      "1.2.3.4",
    ],
    ["trusted peer without a header", "10.0.0.1", h(), ["10.0.0.1"], "10.0.0.1"],
  ];
  for (const [name, peer, headers, trusted, want] of cases) {
    await t.step(name, () => strictEqual(clientAddress(peer, headers, trusted), want));
  }
  await t.step("peerAddress reads Deno.serve's info", () => {
    strictEqual(
      peerAddress({ remoteAddr: { transport: "tcp", hostname: "10.1.1.1", port: 5 } }),
      "10.1.1.1",
    );
    strictEqual(peerAddress(undefined), "unknown");
  });
});

Deno.test("a session refuses frames over its message rate and closes with 1008 on a flood", () => {
  const timers = new ManualTimers();
  const conn = new FakeConnection();
  let limited = 0;
  const handled: unknown[] = [];
  const session = new Session(conn, {
    id: "s1",
    userId: 1,
    timers,
    maxBadFrames: 5,
    messageRate: { perSecond: 2, burst: 3 },
    onRateLimited: () => limited++,
    handler: { onFrame: (_s, f) => Promise.resolve(void handled.push(f)), onClose() {} },
  });
  for (let i = 0; i < 3; i++) session.receive(JSON.stringify({ cmd: 0 }));
  strictEqual(conn.frames().length, 3, "the burst of heartbeats is answered");
  session.receive(JSON.stringify({ cmd: 0 }));
  const refusal = conn.frames().at(-1)!;
  strictEqual(refusal["code"], "rate_limited");
  strictEqual(refusal["retryable"], true);
  match(String(refusal["msg"]), /at most 2 a second/);
  timers.advance(500);
  session.receive(JSON.stringify({ cmd: 0 }));
  strictEqual(conn.frames().at(-1)!["cmd"], 0, "one frame back after 500 ms");
  for (let i = 0; i < 5; i++) session.receive(JSON.stringify({ cmd: 0 }));
  strictEqual(limited, 6);
  deepStrictEqual(conn.closed, { code: 1008, reason: "Too many bad frames" });
  session.closedByPeer();
});

Deno.test("https is the request's scheme, or a trusted proxy's X-Forwarded-Proto", async (t) => {
  const h = (proto?: string) =>
    new Headers(proto === undefined ? {} : { "x-forwarded-proto": proto });
  const cases: [string, string, string, Headers, string[], boolean][] = [
    ["an https request", "https://h/x", "10.0.0.5", h(), [], true],
    ["plain http", "http://h/x", "10.0.0.5", h(), [], false],
    ["an untrusted peer's header is ignored", "http://h/x", "10.0.0.5", h("https"), [
      "10.0.0.1",
    ], false],
    ["a trusted proxy that saw https", "http://h/x", "10.0.0.1", h("https"), ["10.0.0.1"], true],
    ["a trusted proxy that saw http", "http://h/x", "10.0.0.1", h("http"), ["10.0.0.1"], false],
    ["the first proxy's word counts", "http://h/x", "10.0.0.1", h("HTTPS, http"), [
      "10.0.0.1",
    ], true],
  ];
  for (const [name, url, peer, headers, trusted, want] of cases) {
    await t.step(name, () => strictEqual(viaHttps(url, peer, headers, trusted), want));
  }
});

/** POST the form `body` to `path` of `app` as if from TCP peer `peer`, with `headers`. */
function postFrom(
  app: { fetch: (req: Request, env: unknown) => Response | Promise<Response> },
  path: string,
  body: string,
  peer: string,
  headers: Record<string, string>,
): Promise<Response> {
  return Promise.resolve(app.fetch(
    new Request(`http://127.0.0.1${path}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body,
    }),
    { remoteAddr: { transport: "tcp", hostname: peer, port: 40000 } },
  ));
}

Deno.test("the login cookie is Secure behind a trusted TLS proxy, and only then", async () => {
  const limits = new AbuseLimits({ ...TIGHT, loginAttempts: 50, trustedProxies: ["127.0.0.1"] });
  await using t = await makeTestApp({ extra: { limits } });
  await register(t.app, "13800000001");
  const cookieVia = async (peer: string, proto: string) => {
    const res = await postFrom(
      t.app,
      "/user/login",
      "mobile=13800000001&passwd=secret-pass",
      peer,
      {
        "x-forwarded-proto": proto,
      },
    );
    strictEqual(res.status, 200);
    await res.body?.cancel();
    return res.headers.get("set-cookie") ?? "";
  };
  match(await cookieVia("127.0.0.1", "https"), /; Secure/);
  ok(!/; Secure/.test(await cookieVia("127.0.0.1", "http")));
  ok(!/; Secure/.test(await cookieVia("10.9.9.9", "https")), "an untrusted peer cannot ask for it");
});

Deno.test("S8: /user/register answers 429 per address after its attempts, before hashing, 409s included", async () => {
  const seen: LimitName[] = [];
  const limits = new AbuseLimits({ ...TIGHT, trustedProxies: ["127.0.0.1"] }, {
    now: () => 1_700_000_000_000,
    onLimited: (l) => seen.push(l),
  });
  await using t = await makeTestApp({ extra: { limits } });
  let hashes = 0;
  const hash = t.auth.hashPassword.bind(t.auth);
  t.auth.hashPassword = (password: string) => {
    hashes++;
    return hash(password);
  };
  const registerFrom = async (client: string, mobile: string) => {
    const res = await postFrom(
      t.app,
      "/user/register",
      `mobile=${mobile}&passwd=secret-pass`,
      "127.0.0.1",
      {
        "x-forwarded-for": client,
      },
    );
    return { status: res.status, retry: res.headers.get("retry-after"), body: await res.json() };
  };
  strictEqual((await registerFrom("10.0.0.7", "13800000001")).status, 200);
  strictEqual((await registerFrom("10.0.0.7", "13800000001")).status, 409, "taken: counted too");
  const third = await registerFrom("10.0.0.7", "13800000002");
  strictEqual(third.status, 429);
  match(third.body.msg, /^Too many registrations from your address, retry in \d+ s$/);
  strictEqual(third.retry, "450");
  strictEqual(hashes, 2, "the refused one hashed nothing");
  strictEqual((await registerFrom("10.0.0.8", "13800000002")).status, 200, "another address");
  deepStrictEqual(seen, ["register"]);
});

Deno.test("/user/login answers 429 with Retry-After after too many failures, even with the right password", async () => {
  const seen: LimitName[] = [];
  // A fixed clock: with Date.now the second bucket starts a few ms later and may round to 451 s.
  const limits = new AbuseLimits({ ...TIGHT, loginAttempts: 2 }, {
    now: () => 1_700_000_000_000,
    onLimited: (l) => seen.push(l),
  });
  await using t = await makeTestApp({ extra: { limits } });
  await register(t.app, "13800000001");
  const login = (mobile: string, passwd: string) =>
    call(t.app, "/user/login", { fields: { mobile, passwd } });
  strictEqual((await login("13800000001", "wrong-pass")).status, 401);
  strictEqual((await login("13800000001", "wrong-pass")).status, 401);
  const r = await login("13800000001", "secret-pass");
  strictEqual(r.status, 429);
  deepStrictEqual(r.body, { code: -1, msg: "Too many login attempts, retry in 450 s" });
  strictEqual(r.headers.get("retry-after"), "450");
  await login("19900000000", "x-wrong-1");
  await login("19900000000", "x-wrong-2");
  const unknown = await login("19900000000", "x-wrong-3");
  strictEqual(unknown.status, 429, "an unknown mobile is throttled the same way");
  deepStrictEqual(unknown.body, r.body);
  deepStrictEqual(seen, ["login", "login"]);
});

Deno.test("/attach/upload answers 422 past the per-user quota and stores nothing more", async () => {
  const png = await Deno.readFile(new URL("./testdata/avatar_a.png", import.meta.url));
  const limits = new AbuseLimits({ ...TIGHT, uploadQuotaBytes: png.byteLength * 2 });
  await using t = await makeTestApp({ extra: { limits } });
  const { id, token } = await register(t.app, "13800000001");
  const upload = () => {
    const fd = new FormData();
    fd.append("file", new File([png], "a.png"));
    return call(t.app, "/attach/upload", { body: fd, token });
  };
  strictEqual((await upload()).body.code, 0);
  strictEqual((await upload()).body.code, 0);
  const r = await upload();
  strictEqual(r.status, 422);
  match(r.body.msg, /^Upload quota of \d+ bytes reached/);
  strictEqual(await t.store.attachmentBytes(id), png.byteLength * 2);
  const other = await register(t.app, "13800000002");
  const fd = new FormData();
  fd.append("file", new File([png], "a.png"));
  strictEqual((await call(t.app, "/attach/upload", { body: fd, token: other.token })).body.code, 0);
});
