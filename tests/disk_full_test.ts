/**
 * A full disk (a school server filled by uploads): a node on a small tmpfs
 * keeps running, answers each write it cannot store with a clear,
 * retryable error (an error frame naming the message's cid; 503 with
 * `Retry-After` over HTTP) instead of closing sockets with 1011 or
 * answering 500, stores nothing half, and takes the resends once space is
 * freed. The mount needs root, as the network-namespace tests do.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { diskFullError, isDiskFull } from "../lib/disk_full.ts";
import { fromWire, toWire } from "../lib/_append_wire.ts";
import { befriend, connectUser, register, ROOT, startNode } from "./_node_helpers.ts";
import { userConv } from "./_web_pages.ts";

/** The cids of `conv`'s stored messages, oldest first, as `token`'s user reads them. */
async function storedCids(base: string, token: string, conv: string): Promise<string[]> {
  const res = await fetch(`${base}/message/history?conv=${encodeURIComponent(conv)}&limit=500`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const body = await res.json();
  strictEqual(body.code, 0, JSON.stringify(body));
  return body.rows.map((m: { cid: string }) => m.cid);
}

Deno.test("isDiskFull knows SQLite's SQLITE_FULL (also across the worker's wire) and ENOSPC", () => {
  const sqlite = Object.assign(new Error("database or disk is full"), {
    code: "ERR_SQLITE_ERROR",
    errcode: 13,
  });
  ok(isDiskFull(sqlite));
  ok(isDiskFull(fromWire(toWire(sqlite))), "as the append worker reports it");
  ok(
    isDiskFull(
      Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" }),
    ),
  );
  ok(isDiskFull(new Error("batch failed", { cause: sqlite })), "in the cause chain");
  ok(isDiskFull(Object.assign(new Error("konnte Datei nicht erweitern"), { code: "53100" })));
  for (
    const other of [
      Object.assign(new Error("database is locked"), { errcode: 5 }),
      Object.assign(new Error("UNIQUE constraint failed"), { errcode: 2067 }),
      new Error("Connection terminated"),
      "database or disk is full",
    ]
  ) ok(!isDiskFull(other), String(other));
  const answer = diskFullError(sqlite);
  deepStrictEqual([answer.code, answer.status, answer.retryable, answer.retryAfterSeconds], [
    "unavailable",
    503,
    true,
    30,
  ]);
});

async function sh(command: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", command], stderr: "piped" }).output();
  if (!out.success) throw new Error(`${command}: ${new TextDecoder().decode(out.stderr)}`);
}

/** Write zeros to `path` until the file system is full. */
async function fill(path: string): Promise<void> {
  const file = await Deno.open(path, { create: true, write: true });
  const chunk = new Uint8Array(64 * 1024);
  try {
    for (let i = 0; i < 10_000; i++) await file.write(chunk);
    throw new Error("the file system never filled up");
  } catch (error) {
    if (!isDiskFull(error)) throw error;
  } finally {
    file.close();
  }
}

Deno.test({
  name: "a full disk: sends and uploads get a retryable 'disk is full' answer, nothing is stored " +
    "half, and the resends after space is freed are stored once, in order",
  ignore: Deno.uid() !== 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "lanchat_disk_full_" });
    let mounted = false;
    try {
      await sh(`mount -t tmpfs -o size=12m lanchat-disk-full ${dir}`);
      mounted = true;
      const data = join(dir, "data");
      await using node = await startNode({ env: { CHAT_DATA: data, CHAT_BUS: "local" } });
      const base = `http://127.0.0.1:${node.port}`;
      const ann = await register(base, "13900000061", "Ann");
      const bob = await register(base, "13900000062", "Bob");
      await befriend(base, ann, bob);
      const a = await connectUser(`ws://127.0.0.1:${node.port}`, ann);
      const b = await connectUser(`ws://127.0.0.1:${node.port}`, bob);
      const conv = userConv(ann.id, bob.id);

      const filler = join(dir, "filler");
      await fill(filler);
      // The WAL may still have room of its own: send until a message meets the full disk.
      const content = "x".repeat(8 * 1024);
      let refused: Record<string, unknown> | undefined;
      const acked: string[] = [];
      for (let i = 0; i < 400 && refused === undefined; i++) {
        const cid = `full-${i}`;
        a.send({ cmd: 10, dstid: bob.id, media: 1, content, cid });
        const [answer] = await a.waitFor((f) => f["cid"] === cid, 1, 10_000);
        if (answer!["cmd"] === 20) acked.push(cid);
        else refused = answer;
      }
      ok(refused !== undefined, "a message met the full disk");
      deepStrictEqual(
        [refused["cmd"], refused["code"], refused["retryable"], refused["msg"]],
        [21, "unavailable", true, "The server's disk is full: nothing was stored. Try again later"],
      );
      strictEqual(a.ws.readyState, WebSocket.OPEN, "the socket stays open");

      // An upload: 503 with Retry-After, and no partial file left.
      const form = new FormData();
      const photo = await Deno.readFile(join(ROOT, "tests", "testdata", "photo.png"));
      form.append("file", new File([photo, new Uint8Array(256 * 1024)], "p.png"));
      const res = await fetch(`${base}/attach/upload`, {
        method: "POST",
        headers: { authorization: `Bearer ${ann.token}` },
        body: form,
      });
      const body = await res.json();
      deepStrictEqual([res.status, res.headers.get("retry-after"), body.msg], [
        503,
        "30",
        "The server's disk is full: nothing was stored. Try again later",
      ]);
      // A registration (the main connection's own transaction): 503 too.
      const reg = await fetch(`${base}/user/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ mobile: "13900000063", passwd: "secret-pass", nickname: "Cy" }),
      });
      deepStrictEqual([reg.status, (await reg.json()).msg], [
        503,
        "The server's disk is full: nothing was stored. Try again later",
      ]);
      const mnt = join(data, "mnt");
      const left = await Array.fromAsync(Deno.readDir(mnt)).catch(() => []);
      deepStrictEqual(left, [], "no partial upload");

      // Space is freed: the refused message is resent with its cid and stored once.
      await Deno.remove(filler);
      const cid = String(refused["cid"]);
      a.send({ cmd: 10, dstid: bob.id, media: 1, content, cid });
      const [ack] = await a.waitFor((f) => f["cmd"] === 20 && f["cid"] === cid, 1, 10_000);
      strictEqual(ack!["seq"], acked.length + 1, "no seq was used by the refused write");
      const stored = await storedCids(base, bob.token, conv);
      deepStrictEqual(stored, [...acked, cid]);
      const got = await b.waitFor((f) => f["cmd"] === 10, acked.length + 1, 10_000);
      deepStrictEqual(got.map((f) => f["seq"]), stored.map((_, i) => i + 1), "each once, in order");
      ok(
        /The disk is full: messages cannot be stored until space is freed/.test(node.log()),
        node.log(),
      );
      await a.close();
      await b.close();
      strictEqual(await node.stop(), 0, node.log());
    } finally {
      // Lazily: a node still closing must not turn a failure into an EBUSY.
      if (mounted) await sh(`umount -l ${dir}`);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
