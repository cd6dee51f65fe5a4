/** The upload form over the multipart parser: one file part, small text fields, typed errors. */

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { MultipartError, type MultipartErrorReason } from "../lib/http/multipart.ts";
import { FileForm, type FileFormOptions } from "../lib/http/upload_form.ts";
import { concatBytes } from "../lib/bytes.ts";

const enc = new TextEncoder();
const B = "xYz-boundary";

function bytesOf(...parts: (string | Uint8Array)[]): Uint8Array<ArrayBuffer> {
  return concatBytes(parts.map((p) => typeof p === "string" ? enc.encode(p) : p));
}

/** File bytes with a line that looks like the boundary and every byte value. */
const DATA = bytesOf(`\r\n--${B}x\r\n`, Uint8Array.from({ length: 256 }, (_, i) => i));

function isMultipartError(reason: MultipartErrorReason, status: number, msg: string) {
  return (e: unknown) => {
    ok(e instanceof MultipartError, String(e));
    strictEqual(e.reason, reason, e.message);
    strictEqual(e.status, status);
    strictEqual(e.message, msg);
    return true;
  };
}

/** An upload form body: `parts` as [name, filename or undefined, data]. */
function formBody(parts: [string, string | undefined, string | Uint8Array][]): Uint8Array {
  return bytesOf(
    ...parts.flatMap(([name, filename, data]) => [
      `--${B}\r\nContent-Disposition: form-data; name="${name}"`,
      filename === undefined ? "" : `; filename="${filename}"`,
      "\r\n\r\n",
      data,
      "\r\n",
    ]),
    `--${B}--\r\n`,
  );
}

function readForm(body: Uint8Array, options: FileFormOptions, chunk = 7) {
  const form = new FileForm(B, options);
  const file: number[] = [];
  for (let i = 0; i < body.length; i += chunk) {
    for (const bytes of form.push(body.subarray(i, i + chunk))) file.push(...bytes);
  }
  return { ...form.finish(), file };
}

Deno.test("FileForm hands out the file, keeps the first of each text field and skips other files", () => {
  const body = formBody([
    ["userid", undefined, "7"],
    ["other", "b.png", "not kept"],
    ["file", "a.png", DATA],
    ["userid", undefined, "8"],
    ["nickname", undefined, "中文名"],
    ["filetype", undefined, ".png"],
  ]);
  const got = readForm(body, { maxFileBytes: DATA.length, maxFieldBytes: 9 });
  deepStrictEqual(got.file, [...DATA]);
  strictEqual(got.fileBytes, DATA.length);
  // Chunks of 7 bytes cut the UTF-8 of the nickname: it is decoded whole.
  deepStrictEqual({ ...got.fields }, { userid: "7", nickname: "中文名", filetype: ".png" });
});

Deno.test("FileForm hands out a large file as it arrives, holding back at most a delimiter", () => {
  const file = new Uint8Array(1024 * 1024).fill(0x0d);
  const body = formBody([["file", "a.png", file]]);
  const form = new FileForm(B, { maxFileBytes: file.length });
  const held = enc.encode(`\r\n--${B}`).length + 2;
  let given = 0;
  let out = 0;
  for (let i = 0; i < body.length; i += 64 * 1024) {
    const chunk = body.subarray(i, i + 64 * 1024);
    given += chunk.length;
    out += form.push(chunk).reduce((n, b) => n + b.length, 0);
    if (!(i + chunk.length >= body.length)) ok(given - out <= 200 + held, `${given - out} held`);
  }
  strictEqual(form.finish().fileBytes, file.length);
  strictEqual(out, file.length);
});

Deno.test("FileForm refuses a form without exactly one file, or too large, with a typed error", async (t) => {
  const png = "\x89PNG";
  const cases: {
    name: string;
    parts: [string, string | undefined, string | Uint8Array][];
    reason: MultipartErrorReason;
    status: number;
    msg: string;
  }[] = [
    {
      name: "no file part",
      parts: [["x", undefined, "1"]],
      reason: "no_file",
      status: 400,
      msg: 'Missing file field "file"',
    },
    {
      name: "no parts at all",
      parts: [],
      reason: "no_file",
      status: 400,
      msg: 'Missing file field "file"',
    },
    {
      name: "a file under another name",
      parts: [["upload", "a.png", png]],
      reason: "no_file",
      status: 400,
      msg: 'Missing file field "file"',
    },
    {
      name: "two file parts",
      parts: [["file", "a.png", png], ["file", "b.png", png]],
      reason: "duplicate_file",
      status: 400,
      msg: 'More than one file field "file"',
    },
    {
      name: "the file as a text field",
      parts: [["file", undefined, png]],
      reason: "file_is_text",
      status: 400,
      msg: 'Field "file" must be a file',
    },
    {
      name: "a text field over the bound",
      parts: [["file", "a.png", png], ["note", undefined, "n".repeat(17)]],
      reason: "field_too_large",
      status: 413,
      msg: 'Field "note" exceeds 16 bytes',
    },
    {
      name: "a file over the bound",
      parts: [["file", "a.png", "f".repeat(33)]],
      reason: "file_too_large",
      status: 413,
      msg: "File exceeds 32 bytes",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      throws(
        () => readForm(formBody(c.parts), { maxFileBytes: 32, maxFieldBytes: 16 }),
        isMultipartError(c.reason, c.status, c.msg),
      );
    });
  }
  await t.step("a field and a file at their bounds pass", () => {
    const got = readForm(
      formBody([["note", undefined, "n".repeat(16)], ["file", "", "f".repeat(32)]]),
      {
        maxFileBytes: 32,
        maxFieldBytes: 16,
      },
    );
    strictEqual(got.fileBytes, 32);
  });
});
