/** The streaming multipart/form-data parser: any chunking, traps that look like boundaries, typed errors. */

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import {
  MultipartError,
  type MultipartErrorReason,
  type MultipartEvent,
  type MultipartLimits,
  MultipartParser,
  parseBoundary,
} from "../lib/http/multipart.ts";
import { concatBytes } from "../lib/bytes.ts";

const enc = new TextEncoder();
const B = "xYz-boundary";

function bytesOf(...parts: (string | Uint8Array)[]): Uint8Array<ArrayBuffer> {
  return concatBytes(parts.map((p) => typeof p === "string" ? enc.encode(p) : p));
}

/** File data that looks like a boundary in every way that is not one. */
const TRAPS = bytesOf(
  "--" + B + "\r\n", // no line break before it
  "\r\n--" + B + "x", // followed by other text
  "\r\n--" + B + "-x", // one dash, not two
  "\r\n--" + B + "\rx", // CR without LF
  "\r\n--" + B.slice(0, -1), // cut one short
  "\r\r\n-\r\n--\r\n", // line breaks and dashes
  Uint8Array.from({ length: 256 }, (_, i) => i),
  "\r\n",
);

/** A body with a preamble, four parts (one after a padded boundary) and an epilogue. */
const BODY = bytesOf(
  "preamble, ignored\r\n",
  `--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n`,
  `--${B}\r\ncontent-disposition: form-data; name="file"; filename="x.bin"\r\n`,
  "Content-Type: Application/Octet-Stream; x=y\r\n\r\n",
  TRAPS,
  `\r\n--${B} \t\r\nContent-Disposition: form-data; name="e"\r\n\r\n`,
  `\r\n--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\n2\r\n`,
  `--${B}--\r\nepilogue with a boundary, ignored\r\n--${B}\r\n`,
);

interface Part {
  name: string;
  filename: string | undefined;
  data: number[];
}

/** The parts `chunks` parse to, with each part's bytes joined. */
function parse(chunks: Uint8Array[], limits?: MultipartLimits): Part[] {
  const parser = new MultipartParser(B, limits);
  const parts: Part[] = [];
  let open = false;
  const apply = (e: MultipartEvent) => {
    if (e.kind === "headers") {
      ok(!open, "a part begins after the last one ended");
      open = true;
      parts.push({ ...e.part, data: [] });
    } else if (e.kind === "data") {
      ok(open && e.bytes.length > 0);
      parts.at(-1)!.data.push(...e.bytes);
    } else {
      ok(open);
      open = false;
    }
  };
  for (const chunk of chunks) parser.push(chunk).forEach(apply);
  parser.finish();
  ok(parser.done && !open);
  return parts;
}

/** `bytes` cut at each of `cuts` (ascending). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(bytes.slice(at, cut));
    at = cut;
  }
  return out;
}

function isMultipartError(reason: MultipartErrorReason, status: number) {
  return (e: unknown) => {
    ok(e instanceof MultipartError, String(e));
    strictEqual(e.reason, reason, e.message);
    strictEqual(e.status, status);
    ok(e.message !== "" && !e.message.endsWith("."), e.message);
    return true;
  };
}

Deno.test("parseBoundary() reads the boundary of a Content-Type, quoted or not", async (t) => {
  const cases = [
    { name: "plain", input: `multipart/form-data; boundary=${B}`, want: B },
    { name: "quoted with a space", input: 'multipart/form-data; boundary="a b;c"', want: "a b;c" },
    {
      name: "among other parameters",
      input: "multipart/form-data;charset=utf-8;BOUNDARY=q",
      want: "q",
    },
    {
      name: "70 characters",
      input: `multipart/form-data; boundary=${"b".repeat(70)}`,
      want: "b".repeat(70),
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => strictEqual(parseBoundary(c.input), c.want));
  }
});

Deno.test("parseBoundary() refuses a missing, empty, long or non-ASCII boundary", async (t) => {
  for (
    const [name, input] of [
      ["no header", null],
      ["no parameter", "multipart/form-data"],
      ["empty", "multipart/form-data; boundary="],
      ["empty quoted", 'multipart/form-data; boundary=""'],
      ["unclosed quote", 'multipart/form-data; boundary="abc'],
      ["71 characters", `multipart/form-data; boundary=${"b".repeat(71)}`],
      ["not ASCII", "multipart/form-data; boundary=bö"],
    ] as const
  ) {
    await t.step(name, () => {
      throws(() => parseBoundary(input), isMultipartError("no_boundary", 400));
    });
  }
});

Deno.test("MultipartParser reads preamble, parts, a padded boundary and epilogue", () => {
  deepStrictEqual(parse([BODY]), [
    { name: "a", filename: undefined, data: [...enc.encode("1")] },
    { name: "file", filename: "x.bin", data: [...TRAPS] },
    { name: "e", filename: undefined, data: [] },
    { name: "a", filename: undefined, data: [...enc.encode("2")] },
  ]);
});

Deno.test("MultipartParser gives the same parts whatever byte the body is split at", () => {
  const want = parse([BODY]);
  for (let i = 0; i <= BODY.length; i++) {
    deepStrictEqual(parse(split(BODY, [i])), want, `split at ${i}`);
  }
  // Two cuts around each boundary: inside it, its CRLF before and the bytes after.
  const delimiters: number[] = [];
  const marker = enc.encode(`--${B}`);
  for (let i = 0; i + marker.length <= BODY.length; i++) {
    if (marker.every((b, j) => BODY[i + j] === b)) delimiters.push(i);
  }
  for (const d of delimiters) {
    for (let i = Math.max(0, d - 3); i <= d + marker.length + 3; i++) {
      for (let j = i; j <= Math.min(BODY.length, d + marker.length + 5); j++) {
        deepStrictEqual(parse(split(BODY, [i, j])), want, `split at ${i} and ${j}`);
      }
    }
  }
  deepStrictEqual(parse(Array.from(BODY, (b) => Uint8Array.of(b))), want, "one byte a chunk");
});

Deno.test("MultipartParser reads a body the runtime's FormData wrote", async () => {
  const fd = new FormData();
  fd.append('we"ird\nname', "v");
  fd.append("file", new File([TRAPS], 'a"b.png'));
  const res = new Response(fd);
  const boundary = parseBoundary(res.headers.get("content-type"));
  const body = new Uint8Array(await res.arrayBuffer());
  const parser = new MultipartParser(boundary);
  const events = parser.push(body);
  parser.finish();
  const headers = events.flatMap((e) => e.kind === "headers" ? [e.part] : []);
  deepStrictEqual(headers.map((h) => h.name), ["we%22ird%0D%0Aname", "file"]);
  strictEqual(headers[1]?.filename, "a%22b.png");
  const data = events.flatMap((e) => e.kind === "data" ? [...e.bytes] : []);
  deepStrictEqual(data, [...enc.encode("v"), ...TRAPS]);
});

Deno.test("MultipartParser takes a filename's backslash as it is, as browsers send it", () => {
  const parser = new MultipartParser(B);
  const events = parser.push(enc.encode(
    `--${B}\r\ncontent-disposition: form-data; name="file"; filename="shot\\"\r\n\r\n` +
      `x\r\n--${B}--\r\n`,
  ));
  parser.finish();
  const headers = events.flatMap((e) => e.kind === "headers" ? [e.part] : []);
  deepStrictEqual(headers, [{ name: "file", filename: "shot\\" }]);
});

Deno.test("MultipartParser refuses malformed bodies with a typed error, however they are split", async (t) => {
  const part = (headers: string, data = "x") => `--${B}\r\n${headers}\r\n\r\n${data}\r\n`;
  const good = 'Content-Disposition: form-data; name="a"';
  const cases: {
    name: string;
    body: string;
    reason: MultipartErrorReason;
    limits?: MultipartLimits;
  }[] = [
    { name: "empty body", body: "", reason: "no_closing_boundary" },
    { name: "no boundary at all", body: "hello\r\n", reason: "no_closing_boundary" },
    {
      name: "another boundary",
      body: "--other\r\n" + good + "\r\n\r\nx\r\n--other--",
      reason: "no_closing_boundary",
    },
    { name: "cut in the data", body: part(good, "some data"), reason: "no_closing_boundary" },
    { name: "cut in the headers", body: `--${B}\r\nContent-Disp`, reason: "no_closing_boundary" },
    {
      name: "cut in the closing boundary",
      body: part(good) + `--${B}-`,
      reason: "no_closing_boundary",
    },
    { name: "junk after a boundary", body: `--${B} junk\r\n`, reason: "bad_boundary_line" },
    { name: "CR then junk after a boundary", body: `--${B} \rx`, reason: "bad_boundary_line" },
    { name: "endless padding", body: `--${B}${" ".repeat(65)}\r\n`, reason: "bad_boundary_line" },
    { name: "a header line without a colon", body: part(good + "\r\nnope"), reason: "bad_header" },
    { name: "a part without headers", body: `--${B}\r\n\r\nx\r\n--${B}--`, reason: "bad_header" },
    {
      name: "no Content-Disposition",
      body: part("Content-Type: text/plain"),
      reason: "bad_header",
    },
    {
      name: "not form-data",
      body: part('Content-Disposition: attachment; name="a"'),
      reason: "bad_header",
    },
    {
      name: "no name",
      body: part('Content-Disposition: form-data; filename="a"'),
      reason: "bad_header",
    },
    {
      name: "an unclosed quote",
      body: part('Content-Disposition: form-data; name="a'),
      reason: "bad_header",
    },
    {
      name: "headers over the bound",
      body: part(good + "\r\nX-Pad: " + "p".repeat(100)),
      reason: "headers_too_large",
      limits: { maxHeaderBytes: 100 },
    },
    {
      name: "headers that never end",
      body: `--${B}\r\n` + "X: y\r\n".repeat(1000),
      reason: "headers_too_large",
    },
    {
      name: "too many parts",
      body: part(good).repeat(4) + `--${B}--`,
      reason: "too_many_parts",
      limits: { maxParts: 3 },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const body = enc.encode(c.body);
      for (const chunks of [[body], Array.from(body, (b) => Uint8Array.of(b))]) {
        throws(() => parse(chunks, c.limits), isMultipartError(c.reason, 400));
      }
    });
  }
});
