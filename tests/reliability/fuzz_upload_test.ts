/**
 * Fuzzing `/attach/upload`: 100,000 generated bad multipart uploads
 * (truncated, oversized, wrong types, bad boundaries, path traversal and
 * unicode in file names, nested multipart, files as text fields) go through
 * `app.fetch`. Each gets a 4xx `{code:-1,msg}`, nothing is stored and no
 * file is written. A good image under a hostile file name is stored under a
 * server-chosen name inside the uploads folder, never under the given name.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { makeTestApp, PNG, register, snapshot } from "../_http_helpers.ts";
import { catchPrinted } from "../_printed.ts";
import { NASTY_CHARS, Rng, SEED, TRAVERSALS } from "./_fuzz.ts";

const COUNT = 100_000;
const MAX = 2048;
const BASE = "http://127.0.0.1";
const NAME = /^[0-9a-f]{32}\.[a-z0-9]{2,4}$/;
const enc = new TextEncoder();

function concat(...parts: (string | Uint8Array)[]): Uint8Array<ArrayBuffer> {
  const bytes = parts.map((p) => typeof p === "string" ? enc.encode(p) : p);
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bytes) out.set(b, at), at += b.length;
  return out;
}

/** A hostile file name: traversal, unicode edge cases, quotes, CR/LF, very long. */
function fileName(rng: Rng): string {
  return rng.pick([
    () => rng.pick(TRAVERSALS),
    () => `${rng.text(1 + rng.int(12))}.${rng.pick(["png", "html", "svg", "exe", "php"])}`,
    () => `a".png`,
    () => `x.png\r\nContent-Type: text/html`,
    () => "中".repeat(300) + ".png",
    () => `${rng.pick(NASTY_CHARS)}${rng.pick(TRAVERSALS)}`,
    () => "",
  ])();
}

/** Content that is not an allowed type (it starts with bytes no sniffed type starts with). */
function badContent(rng: Rng): Uint8Array {
  return rng.pick([
    () => enc.encode("<html><script>alert(1)</script></html>"),
    () => enc.encode('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
    () => enc.encode("MZ\x90\x00 this is not an image"),
    () => enc.encode("%PDF-1.4 ..."),
    () => enc.encode("PK\x03\x04zip"),
    () => enc.encode("#!/bin/sh\nrm -rf /\n"),
    () => concat("<", rng.bytes(1 + rng.int(500))),
    () => concat("\u0000GIF89", rng.bytes(20)), // a magic number one byte late
    () => concat(PNG.subarray(0, 1 + rng.int(7))), // a PNG signature cut short
    () => concat("ftypisom", rng.bytes(20)), // the mp4 brand in the wrong place
  ])();
}

interface Upload {
  readonly body: Uint8Array<ArrayBuffer>;
  readonly type: string;
}

/** A multipart body with one file part; the caller breaks it. */
function multipart(
  boundary: string,
  parts: { name: string; file?: string; type?: string; data: Uint8Array }[],
): Uint8Array<ArrayBuffer> {
  const chunks: (string | Uint8Array)[] = [];
  for (const p of parts) {
    chunks.push(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`);
    if (p.file !== undefined) chunks.push(`; filename="${p.file}"`);
    chunks.push(
      `\r\n${p.type === undefined ? "" : `Content-Type: ${p.type}\r\n`}\r\n`,
      p.data,
      "\r\n",
    );
  }
  chunks.push(`--${boundary}--\r\n`);
  return concat(...chunks);
}

function badUpload(rng: Rng): { what: string; upload: Upload; token: boolean } {
  const boundary = `b${rng.int(1e9)}`;
  const type = `multipart/form-data; boundary=${boundary}`;
  const file = (data: Uint8Array, name = fileName(rng)) => ({
    name: "file",
    file: name,
    type: rng.pick(["image/png", "text/html", "application/octet-stream", "../x", ""]),
    data,
  });
  switch (rng.int(10)) {
    case 0:
      return {
        what: "wrong type",
        upload: { body: multipart(boundary, [file(badContent(rng))]), type },
        token: true,
      };
    case 1: { // truncated before the closing boundary
      const whole = multipart(boundary, [file(concat(PNG, rng.bytes(200)))]);
      return {
        what: "truncated",
        upload: { body: whole.slice(0, rng.int(whole.length - boundary.length - 8)), type },
        token: true,
      };
    }
    case 2: // over the size limit
      return {
        what: "oversized",
        upload: {
          body: multipart(boundary, [file(concat(PNG, new Uint8Array(MAX + rng.int(MAX * 12))))]),
          type,
        },
        token: true,
      };
    case 3: { // a bad or missing boundary, or not multipart at all
      const body = multipart(boundary, [file(concat(PNG, rng.bytes(50)))]);
      const t = rng.pick([
        "multipart/form-data",
        `multipart/form-data; boundary=other`,
        `multipart/form-data; boundary=""`,
        `multipart/mixed; boundary=${boundary}`,
        "application/json",
        "image/png",
        "text/plain",
        "",
      ]);
      return { what: `content type ${t}`, upload: { body, type: t }, token: true };
    }
    case 4: // the file sent as a text field, or missing, or empty
      return {
        what: "no file",
        upload: {
          body: multipart(
            boundary,
            rng.pick([
              [{ name: "file", data: concat(PNG) }],
              [{ name: "other", file: "a.png", data: concat(PNG) }],
              [{ name: "file", file: "a.png", type: "image/png", data: new Uint8Array(0) }],
              Array.from(
                { length: 1 + rng.int(100) },
                (_, i) => ({ name: `f${i}`, data: enc.encode("x") }),
              ),
            ]),
          ),
          type,
        },
        token: true,
      };
    case 5: { // nested multipart: an image inside a part that is itself multipart
      const inner = `i${rng.int(1e6)}`;
      const nested = multipart(inner, [{
        name: "file",
        file: "a.png",
        type: "image/png",
        data: concat(PNG),
      }]);
      return {
        what: "nested",
        upload: {
          body: multipart(boundary, [{
            name: "file",
            file: fileName(rng),
            type: `multipart/mixed; boundary=${inner}`,
            data: nested,
          }]),
          type,
        },
        token: true,
      };
    }
    case 6: // a good image but no login
      return {
        what: "no login",
        upload: { body: multipart(boundary, [file(concat(PNG, rng.bytes(30)))]), type },
        token: false,
      };
    case 7: { // garbage between boundaries, broken part headers
      const body = concat(
        `--${boundary}\r\n`,
        rng.pick(["Content-Disposition: form-data\r\n\r\n", "\r\n\r\n", "X: y\r\n", rng.text(30)]),
        rng.bytes(rng.int(200)),
        rng.next() < 0.5 ? `\r\n--${boundary}--\r\n` : "",
      );
      return { what: "broken part", upload: { body, type }, token: true };
    }
    case 8: // unicode in the field name and a bad file
      return {
        what: "unicode names",
        upload: {
          body: multipart(boundary, [{
            name: rng.text(6).replace(/["\r\n]/g, ""),
            file: fileName(rng),
            data: badContent(rng),
          }]),
          type,
        },
        token: true,
      };
    default: // an empty body
      return { what: "empty", upload: { body: new Uint8Array(0), type }, token: true };
  }
}

async function listAll(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${prefix}${e.name}`;
    out.push(path);
    if (e.isDirectory) out.push(...await listAll(`${dir}/${e.name}`, `${path}/`));
  }
  return out.sort();
}

Deno.test(
  `Upload fuzz: ${COUNT} bad multipart uploads get a 4xx {code:-1,msg}; nothing stored or written (seed ${SEED})`,
  async () => {
    await using t = await makeTestApp({ store: "sqlite", config: { uploadMaxBytes: MAX } });
    using printed = catchPrinted();
    const user = await register(t.app, "13900000001");
    const before = await snapshot(t.store);
    const filesBefore = await listAll(t.dir);
    const rng = new Rng(SEED);
    const failures: string[] = [];
    const kinds = new Map<string, number>();
    for (let i = 0; i < COUNT; i++) {
      const { what, upload, token } = badUpload(rng);
      const headers = new Headers(upload.type === "" ? {} : { "content-type": upload.type });
      if (token) headers.set("authorization", `Bearer ${user.token}`);
      const res = await t.app.fetch(
        new Request(`${BASE}/attach/upload`, { method: "POST", headers, body: upload.body }),
      );
      const text = await res.text();
      let body: { code?: unknown; msg?: unknown } | undefined;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      const good = res.status >= 400 && res.status < 500 && body?.code === -1 &&
        typeof body.msg === "string" && body.msg !== "";
      kinds.set(what, (kinds.get(what) ?? 0) + 1);
      if (!good && failures.length < 10) {
        failures.push(`#${i} ${what} → ${res.status} ${text.slice(0, 120)}`);
      }
    }
    deepStrictEqual(failures, [], `seed ${SEED}`);
    printed.assertNone(`seed ${SEED}`);
    strictEqual(await snapshot(t.store), before, "no row changed");
    strictEqual(await t.store.attachmentBytes(user.id), 0, "no attachment row");
    deepStrictEqual(
      await listAll(t.dir),
      filesBefore.filter((f) => f !== "mnt"),
      "no file written",
    );
    ok((kinds.get("oversized") ?? 0) > 5000 && (kinds.get("truncated") ?? 0) > 5000);
  },
);

Deno.test(`Upload fuzz: a good image under a hostile file name is stored only under a server-chosen name (seed ${SEED})`, async () => {
  await using t = await makeTestApp({ store: "sqlite", config: { uploadMaxBytes: MAX } });
  const user = await register(t.app, "13900000001");
  const rng = new Rng(SEED ^ 0xf11e);
  const names: string[] = [];
  for (let i = 0; i < 300; i++) {
    const boundary = `b${i}`;
    const body = multipart(boundary, [{
      name: "file",
      // Quotes and line breaks escaped as a browser does; the rest stays hostile.
      // deno-lint-ignore no-control-regex
      file: fileName(rng).replaceAll('"', "%22").replace(/[\r\n\u0000]/g, ""),
      type: rng.pick(["text/html", "image/svg+xml", "image/png"]),
      data: concat(PNG, rng.bytes(40)),
    }]);
    const res = await t.app.fetch(
      new Request(`${BASE}/attach/upload`, {
        method: "POST",
        headers: {
          "content-type": `multipart/form-data; boundary=${boundary}`,
          authorization: `Bearer ${user.token}`,
        },
        body,
      }),
    );
    const reply = await res.json();
    strictEqual(res.status, 200, JSON.stringify(reply));
    const name = String(reply.data).replace(/^\/mnt\//, "");
    ok(NAME.test(name) && name.endsWith(".png"), name);
    names.push(name);
  }
  // Only the uploads folder got files, each under its server-chosen name and each recorded.
  deepStrictEqual(
    await listAll(t.dir),
    ["mnt", ...names.map((n) => `mnt/${n}`), "static", "static/css", "static/css/app.css"].sort(),
  );
  for (const n of names) ok(await t.store.findAttachment(n), n);
  strictEqual(await t.store.attachmentBytes(user.id), 300 * (PNG.length + 40));
});
