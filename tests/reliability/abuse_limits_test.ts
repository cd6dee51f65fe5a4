/**
 * Abuse limits end to end: a real `deno run main.ts` node started with tight
 * limits in its environment, driven over real HTTP and websockets. Each
 * limit is hit once and must answer its clear error (error frame and close
 * 1008, HTTP 429 with Retry-After, HTTP 422) and count in
 * `lanchat_limited_total` on /metrics. The node trusts 127.0.0.1 as a proxy,
 * so each check claims its own client address with X-Forwarded-For (which
 * also proves that setting end to end).
 */

import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { TestSocket } from "../_chat_helpers.ts";
import { readUntilClose } from "../_raw_ws.ts";
import { getText, register, ROOT, startNode, type TestUser } from "../_node_helpers.ts";

const PNG_PATH = join(ROOT, "tests", "testdata", "avatar_a.png");

/** A websocket handshake on a raw socket: the status, the head (with the body of a refusal), the bytes after a 101. */
async function handshake(
  port: number,
  user: TestUser,
  forwardedFor: string,
): Promise<{ status: number; head: string; rest: Uint8Array; conn: Deno.TcpConn }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const path = `/chat?id=${user.id}&token=${encodeURIComponent(user.token)}`;
  await conn.write(new TextEncoder().encode(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${btoa("0123456789abcdef")}\r\n` +
      `Sec-WebSocket-Version: 13\r\nX-Forwarded-For: ${forwardedFor}\r\n\r\n`,
  ));
  let bytes = new Uint8Array(0);
  const buf = new Uint8Array(4096);
  for (;;) {
    const text = new TextDecoder().decode(bytes);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const status = Number(text.split(" ")[1]);
      const length = Number(text.match(/content-length: (\d+)/i)?.[1] ?? 0);
      const headBytes = new TextEncoder().encode(text.slice(0, end + 4)).length;
      // A refusal is returned with its body; a 101 with the bytes after its head.
      if (status === 101) {
        return { status, head: text.slice(0, end + 4), rest: bytes.subarray(headBytes), conn };
      }
      if (bytes.length >= headBytes + length) {
        return { status, head: text, rest: new Uint8Array(0), conn };
      }
    }
    const n = await conn.read(buf);
    if (n === null) return { status: 0, head: text, rest: new Uint8Array(0), conn };
    const next = new Uint8Array(bytes.length + n);
    next.set(bytes);
    next.set(buf.subarray(0, n), bytes.length);
    bytes = next;
  }
}

/** `count` small masked text frames (zero mask key) back to back. */
function maskedTexts(text: string, count: number): Uint8Array {
  const payload = new TextEncoder().encode(text);
  const frame = new Uint8Array([0x81, 0x80 | payload.length, 0, 0, 0, 0, ...payload]);
  const out = new Uint8Array(frame.length * count);
  for (let i = 0; i < count; i++) out.set(frame, i * frame.length);
  return out;
}

function limitedCount(page: string, limit: string): number {
  const m = page.match(new RegExp(`^lanchat_limited_total\\{limit="${limit}"\\} (\\d+)$`, "m"));
  return m === null ? -1 : Number(m[1]);
}

async function postJson(
  base: string,
  path: string,
  body: Record<string, unknown>,
  forwardedFor: string,
): Promise<{ status: number; retryAfter: string | null; body: Record<string, unknown> }> {
  const res = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-forwarded-for": forwardedFor },
    body: JSON.stringify(body),
  });
  return { status: res.status, retryAfter: res.headers.get("retry-after"), body: await res.json() };
}

Deno.test("each abuse limit of a running node answers its clear error and counts on /metrics", async (t) => {
  const png = await Deno.readFile(PNG_PATH);
  const dataDir = await Deno.makeTempDir({ prefix: "lanchat_abuse_" });
  try {
    await using node = await startNode({
      env: {
        CHAT_DATA: dataDir,
        CHAT_BUS: "local",
        CHAT_MSG_RATE: "5",
        CHAT_CONNECT_RATE: "3",
        CHAT_USER_CONNECTIONS: "2",
        CHAT_LOGIN_ATTEMPTS: "3",
        CHAT_LOGIN_IP_ATTEMPTS: "5",
        CHAT_UPLOAD_QUOTA_BYTES: String(png.byteLength * 2),
        CHAT_LOOKUP_RATE: "2",
        CHAT_FRIEND_ADDS: "2",
        CHAT_GROUP_JOINS: "2",
        CHAT_TRUSTED_PROXIES: "127.0.0.1",
      },
    });
    const base = `http://127.0.0.1:${node.port}`;
    const ws = `ws://127.0.0.1:${node.port}`;
    const [a, b, c] = [
      await register(base, "13800000001", "a"),
      await register(base, "13800000002", "b"),
      await register(base, "13800000003", "c"),
    ];
    const socketOf = (user: TestUser, address: string) =>
      new TestSocket(`${ws}/chat?id=${user.id}&token=${encodeURIComponent(user.token)}`, {
        headers: { "x-forwarded-for": address },
      });

    await t.step("messages: a flood gets rate_limited error frames, then close 1008", async () => {
      const { status, rest, conn } = await handshake(node.port, a, "10.9.0.1");
      strictEqual(status, 101);
      try {
        // 30 heartbeats in one write, so no token comes back in between (one
        // more would let the node close before reading them all, and a close
        // with unread input resets the TCP connection, losing the close frame).
        await conn.write(maskedTexts('{"cmd":0}', 30));
        const { texts, closeCode } = await readUntilClose(conn, rest);
        strictEqual(closeCode, 1008);
        strictEqual(texts, 30, "10 heartbeats (the burst) answered, then 20 refusals");
      } finally {
        conn.close();
      }
      const s = socketOf(a, "10.9.0.2");
      await s.opened;
      for (let i = 0; i < 12; i++) s.send({ cmd: 0 });
      const [refusal] = await s.waitFor((f) => f["cmd"] === 21);
      strictEqual(refusal!["code"], "rate_limited");
      strictEqual(refusal!["retryable"], true);
      match(String(refusal!["msg"]), /at most 5 a second/);
      await s.close();
    });

    await t.step(
      "connect_ip: the 4th upgrade a minute from one address gets 429 + Retry-After",
      async () => {
        for (let i = 0; i < 3; i++) {
          const ok101 = await handshake(node.port, b, "10.9.1.1");
          strictEqual(ok101.status, 101, ok101.head);
          ok101.conn.close();
        }
        const refused = await handshake(node.port, b, "10.9.1.1");
        refused.conn.close();
        strictEqual(refused.status, 429);
        match(refused.head, /retry-after: 20\r\n/i);
        match(refused.head, /Too many connections from your address, retry in 20 s/);
        const other = await handshake(node.port, b, "10.9.1.2");
        other.conn.close();
        strictEqual(other.status, 101, "another address is not affected");
      },
    );

    await t.step(
      "user_connections: a 3rd open socket of one user gets 429 until one closes",
      async () => {
        const first = socketOf(c, "10.9.2.1");
        const second = socketOf(c, "10.9.2.2");
        await Promise.all([first.opened, second.opened]);
        const third = await handshake(node.port, c, "10.9.2.3");
        third.conn.close();
        strictEqual(third.status, 429);
        match(third.head, /Too many open connections for this user \(at most 2\)/);
        await first.close();
        // The slot comes back when the server sees the close.
        let again = await handshake(node.port, c, "10.9.2.4");
        for (let i = 0; again.status !== 101 && i < 20; i++) {
          again.conn.close();
          await new Promise((r) => setTimeout(r, 50));
          again = await handshake(node.port, c, `10.9.3.${i}`);
        }
        strictEqual(again.status, 101);
        again.conn.close();
        await second.close();
      },
    );

    await t.step(
      "login: failures per mobile and per address get 429, alike for unknown mobiles",
      async () => {
        for (let i = 0; i < 3; i++) {
          const r = await postJson(base, "/user/login", {
            mobile: "13800000001",
            passwd: "wrong-pass",
          }, `10.9.4.${i}`);
          strictEqual(r.status, 401);
        }
        const right = await postJson(base, "/user/login", {
          mobile: "13800000001",
          passwd: "secret-pass",
        }, "10.9.4.9");
        strictEqual(right.status, 429, "even the right password waits");
        // The 300 s window counts from the first failure: a loaded machine (CI once) may take
        // over a second for these requests, and the header then reads 299.
        const wait = Number(right.retryAfter);
        ok(wait >= 290 && wait <= 300, `Retry-After ${right.retryAfter}`);
        deepStrictEqual(right.body, {
          code: -1,
          msg: `Too many login attempts, retry in ${wait} s`,
        });
        for (let i = 0; i < 5; i++) {
          await postJson(
            base,
            "/user/login",
            { mobile: `1990000000${i}`, passwd: "x-wrong" },
            "10.9.5.1",
          );
        }
        const byIp = await postJson(base, "/user/login", {
          mobile: "13800000002",
          passwd: "secret-pass",
        }, "10.9.5.1");
        strictEqual(byIp.status, 429, "the address used up its failures");
        const elsewhere = await postJson(base, "/user/login", {
          mobile: "13800000002",
          passwd: "secret-pass",
        }, "10.9.5.2");
        strictEqual(elsewhere.status, 200);
      },
    );

    await t.step("upload_quota: the upload past the per-user quota gets 422", async () => {
      const upload = async () => {
        const fd = new FormData();
        fd.append("file", new File([png], "a.png"));
        const res = await fetch(`${base}/attach/upload`, {
          method: "POST",
          headers: { authorization: `Bearer ${a.token}` },
          body: fd,
        });
        return { status: res.status, body: await res.json() };
      };
      strictEqual((await upload()).status, 200);
      strictEqual((await upload()).status, 200);
      const over = await upload();
      strictEqual(over.status, 422);
      match(over.body.msg, new RegExp(`^Upload quota of ${png.byteLength * 2} bytes reached`));
    });

    await t.step(
      "lookup, friend_add, group_join: per-user rates get 429 + Retry-After, another user is not affected",
      async () => {
        const as = async (user: TestUser, path: string, body: Record<string, unknown>) => {
          const res = await fetch(base + path, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${user.token}` },
            body: JSON.stringify(body),
          });
          return {
            status: res.status,
            retryAfter: res.headers.get("retry-after"),
            body: await res.json(),
          };
        };
        // Strangers' ids: found or not, each lookup counts (2 a minute).
        strictEqual((await as(c, "/user/find", { id: 999_991 })).status, 404);
        strictEqual((await as(c, "/user/find", { id: 999_992 })).status, 404);
        const lookup = await as(c, "/user/find", { id: 999_993 });
        strictEqual(lookup.status, 429);
        // One back every 30 s, counted from the first lookup: a slow machine may read 29.
        const wait = Number(lookup.retryAfter);
        ok(wait >= 25 && wait <= 30, `Retry-After ${lookup.retryAfter}`);
        deepStrictEqual(lookup.body, {
          code: -1,
          msg: `Too many user lookups, retry in ${wait} s`,
        });
        strictEqual((await as(c, "/user/find", { id: c.id })).status, 200, "yourself is free");
        // Friend adds: 2 an hour, a repeat (409) counts too.
        strictEqual((await as(c, "/contact/addfriend", { dstid: a.id })).status, 200);
        strictEqual((await as(c, "/contact/addfriend", { dstid: a.id })).status, 409);
        const add = await as(c, "/contact/addfriend", { dstid: b.id });
        strictEqual(add.status, 429);
        ok(Number(add.retryAfter) >= 1790 && Number(add.retryAfter) <= 1800, add.retryAfter ?? "");
        match(String(add.body["msg"]), /^Too many friend adds, retry in 1[78]\d\d s$/);
        strictEqual((await as(b, "/contact/addfriend", { dstid: a.id })).status, 200, "per user");
        // Group joins and creations share 2 an hour.
        const group = await as(b, "/contact/createcommunity", { name: "limits" });
        strictEqual(group.status, 200);
        const gid = (group.body["data"] as { id: number }).id;
        strictEqual((await as(c, "/contact/joincommunity", { dstid: gid })).status, 200);
        const again = await as(c, "/contact/joincommunity", { dstid: gid });
        strictEqual(again.body["msg"], "Already a member");
        const join = await as(c, "/contact/joincommunity", { dstid: gid });
        strictEqual(join.status, 429);
        ok(
          Number(join.retryAfter) >= 1790 && Number(join.retryAfter) <= 1800,
          join.retryAfter ?? "",
        );
        match(String(join.body["msg"]), /^Too many group joins, retry in 1[78]\d\d s$/);
      },
    );

    await t.step("every refusal is counted by limit on /metrics", async () => {
      const page = (await getText(`${base}/metrics`)).text;
      ok(limitedCount(page, "messages") >= 20, page);
      strictEqual(limitedCount(page, "connect_ip"), 1);
      ok(limitedCount(page, "user_connections") >= 1);
      strictEqual(limitedCount(page, "login"), 2);
      strictEqual(limitedCount(page, "upload_quota"), 1);
      strictEqual(limitedCount(page, "lookup"), 1);
      strictEqual(limitedCount(page, "friend_add"), 1);
      strictEqual(limitedCount(page, "group_join"), 1);
    });
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
