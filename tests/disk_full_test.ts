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
import { DatabaseSync } from "node:sqlite";
import { Kysely, sql } from "kysely";
import { AppendConnection } from "../lib/_sqlite_append_connection.ts";
import { sqliteDialect } from "../lib/_sqlite_dialect.ts";
import { explainSqliteError } from "../lib/_sqlite_no_space.ts";
import { befriend, connectUser, register, ROOT, startNode } from "./_node_helpers.ts";
import { requests, twoUsers } from "./_store_samples.ts";
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

Deno.test("isDiskFull knows SQLite's SQLITE_FULL (also across the worker's wire), ENOSPC and EDQUOT", () => {
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
  ok(
    isDiskFull(Object.assign(new Error("Disk quota exceeded (os error 122)"), { code: "EDQUOT" })),
  );
  ok(isDiskFull(Object.assign(new Error("konnte Datei nicht erweitern"), { code: "53100" })));
  for (
    const other of [
      Object.assign(new Error("database is locked"), { errcode: 5 }),
      Object.assign(new Error("UNIQUE constraint failed"), { errcode: 2067 }),
      new Error("Connection terminated"),
      // An I/O error is a full disk only once the probe found one (_sqlite_no_space.ts).
      Object.assign(new Error("disk I/O error"), { errcode: 4874 }),
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
      // Registrations (the main connection's own transactions): 503 too.
      for (const mobile of ["13900000063", "13900000064", "13900000065"]) {
        const reg = await fetch(`${base}/user/register`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ mobile, passwd: "secret-pass", nickname: "Cy" }),
        });
        deepStrictEqual([reg.status, (await reg.json()).msg], [
          503,
          "The server's disk is full: nothing was stored. Try again later",
        ]);
      }
      // One warning for the node, not one per write: the websocket's and HTTP's share it.
      const warnings = node.log().match(/The disk is full/g) ?? [];
      strictEqual(warnings.length, 1, node.log());
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
        /The disk is full: nothing can be stored until space is freed/.test(node.log()),
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

/** Run `fn` with a fresh tmpfs of `size` mounted at a temporary folder. */
async function withTmpfs(size: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_disk_full_" });
  let mounted = false;
  try {
    await sh(`mount -t tmpfs -o size=${size} lanchat-disk-full ${dir}`);
    mounted = true;
    await fn(dir);
  } finally {
    if (mounted) await sh(`umount -l ${dir}`);
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * SQLite's own error behind `error` (its cause, or itself): its extended
 * code, or its message where Deno's `exec()` gives no code.
 */
function sqliteError(error: unknown): unknown {
  const e = error as { cause?: unknown };
  const own = (e.cause ?? error) as { errcode?: unknown; message?: unknown };
  return own.errcode ?? own.message;
}

/**
 * The first frame whose index needs the second 32 KiB region of the `-shm`
 * file: the first region holds 4062 (SQLite's HASHTABLE_NPAGE_ONE), past
 * its headers.
 */
const FIRST_SHM_REGION_FRAMES = 4062;

/**
 * Grow the WAL of `path` (in `dir`, a tmpfs) with `write` until its next
 * `write(big)` crosses into the second `-shm` region, fill the disk so that
 * the WAL frames of that write fit but the region does not, and return what
 * that write threw. `write` commits one row of `content`; its connection
 * must not checkpoint before 4062 frames.
 */
async function crossShmRegionOnFullDisk(
  path: string,
  dir: string,
  write: (content: string) => Promise<unknown>,
): Promise<unknown> {
  const reader = new DatabaseSync(path);
  const { page_size: pageSize } = reader.prepare("pragma page_size").get() as { page_size: number };
  reader.close();
  const frameBytes = pageSize + 24;
  // No WAL yet (a connection not used so far): none.
  const walBytes = () => Deno.stat(`${path}-wal`).then((i) => i.size, () => 32);
  const frames = async () => ((await walBytes()) - 32) / frameBytes;
  const big = "y".repeat(60_000);
  while (await frames() < FIRST_SHM_REGION_FRAMES - 60) await write(big);
  // How many frames a big write takes; then small ones until the next big one crosses.
  const before = await frames();
  await write(big);
  const perBig = (await frames()) - before;
  while (await frames() + perBig <= FIRST_SHM_REGION_FRAMES) await write("s");
  // Room for the big write's frames and two pages more: not for a 32 KiB region.
  const wal = await walBytes();
  const pages = Math.ceil((wal + (perBig + 1) * frameBytes) / 4096) - Math.ceil(wal / 4096);
  await Deno.writeFile(join(dir, "slack"), new Uint8Array((pages + 2) * 4096));
  await fill(join(dir, "filler"));
  await Deno.remove(join(dir, "slack"));
  return await write(big).then(() => undefined, (e) => e);
}

/** The two SQLite connections that write, and what SQLite's error says on each. */
const WRITERS = [
  {
    name: "the append connection (appends: its COMMIT is an exec(), whose error has no code)",
    sqlite: "disk I/O error",
    open(path: string, [ann, bob]: [number, number]) {
      const connection = new AppendConnection(path, {
        busyTimeoutMs: 1000,
        walSyncMs: 0,
        checkpoints: false,
        warn: () => {},
      });
      let cid = 0;
      return {
        async write(content: string) {
          const [outcome] = await connection.write(requests(ann, bob, 1, `m${cid++}`, content));
          if (!outcome?.ok) throw outcome?.error;
        },
        close: () => connection.close(),
      };
    },
  },
  {
    name: "the main connection (users, friends, groups: Kysely's statements carry the code)",
    sqlite: 4874,
    open(path: string, [ann]: [number, number]) {
      const db = new Kysely<Record<string, never>>({ dialect: sqliteDialect(path) });
      return {
        // New bytes each time: SQLite rewrites only the overflow pages that changed.
        write: (content: string) => {
          const memo = crypto.randomUUID().repeat(Math.ceil(content.length / 36));
          return sql`update users set memo = ${memo} where id = ${ann}`.execute(db).then(() => {});
        },
        close: () => db.destroy(),
      };
    },
  },
];

for (const writer of WRITERS) {
  Deno.test({
    name: "SQLite's 'disk I/O error' from a full disk (SQLITE_IOERR_SHMSIZE: the WAL's frames " +
      `were written, its -shm index could not grow) is a full disk: ${writer.name}`,
    ignore: Deno.uid() !== 0,
    async fn() {
      await withTmpfs("24m", async (dir) => {
        const path = join(dir, "chat.db");
        const users = await twoUsers(path);
        const { write, close } = writer.open(path, users);
        try {
          const refused = await crossShmRegionOnFullDisk(path, dir, write);
          strictEqual(sqliteError(refused), writer.sqlite, `SQLite's own error: ${refused}`);
          ok(isDiskFull(refused), String(refused));
          ok(isDiskFull(fromWire(toWire(refused))), "as the append worker reports it");
          // Space freed: the same write goes through.
          await Deno.remove(join(dir, "filler"));
          await write("y".repeat(60_000));
        } finally {
          await close();
        }
        const left = (await Array.fromAsync(Deno.readDir(dir), (e) => e.name))
          .filter((n) => !n.startsWith("chat.db"));
        deepStrictEqual(left, [], "no probe file is left");
      });
    },
  });
}

Deno.test({
  name:
    "SQLite's 'disk I/O error' opening a database on a full disk (a new -shm index) is a full " +
    "disk",
  ignore: Deno.uid() !== 0,
  async fn() {
    await withTmpfs("4m", async (dir) => {
      const path = join(dir, "chat.db");
      const [ann] = await twoUsers(path);
      // Closed cleanly: the next connection builds a new -shm index, which needs space.
      deepStrictEqual(await Deno.stat(`${path}-shm`).then(() => true, () => false), false);
      await fill(join(dir, "filler"));
      const db = new Kysely<Record<string, never>>({ dialect: sqliteDialect(path) });
      try {
        const refused = await sql`select id from users where id = ${ann}`.execute(db)
          .then(() => undefined, (e) => e);
        strictEqual(sqliteError(refused), "disk I/O error", `SQLite's own error: ${refused}`);
        ok(isDiskFull(refused), String(refused));
      } finally {
        await db.destroy();
      }
    });
  },
});

Deno.test({
  name: "a SQLite I/O error is not called a full disk when the disk has room, nor one that a " +
    "full disk cannot cause",
  ignore: Deno.uid() !== 0,
  async fn() {
    // Without a code: as Deno's exec() throws it.
    const ioerr = (errcode?: number) =>
      Object.assign(
        new Error("disk I/O error"),
        { code: "ERR_SQLITE_ERROR" },
        errcode === undefined ? {} : { errcode },
      );
    const roomy = await Deno.makeTempDir({ prefix: "lanchat_disk_room_" });
    try {
      for (const errcode of [778, 1034, 1546, 4874, undefined]) {
        const error = ioerr(errcode);
        strictEqual(await explainSqliteError(error, roomy), error, `room left, ${errcode}`);
        ok(!isDiskFull(error));
      }
      deepStrictEqual(await Array.fromAsync(Deno.readDir(roomy)), [], "no probe file is left");
    } finally {
      await Deno.remove(roomy, { recursive: true });
    }
    await withTmpfs("1m", async (dir) => {
      await fill(join(dir, "filler"));
      // IOERR_READ (266) and IOERR_CORRUPTFS (8458): nothing a full disk causes.
      for (const errcode of [266, 8458]) {
        const error = ioerr(errcode);
        strictEqual(await explainSqliteError(error, dir), error, String(errcode));
      }
      // No folder to probe (`:memory:`): unchanged.
      const memory = ioerr(4874);
      strictEqual(await explainSqliteError(memory, undefined), memory);
      for (const errcode of [778, undefined]) {
        const full = await explainSqliteError(ioerr(errcode), dir);
        ok(isDiskFull(full), String(full));
      }
    });
  },
});
