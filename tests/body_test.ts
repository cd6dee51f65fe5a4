/** readFields(), readLimited() and bodyChunks(): bodies with a byte limit, JSON and form fields (L8). */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { ClientError } from "../lib/errors.ts";
import { bodyChunks, parseJsonFields, readFields, readLimited } from "../lib/http/body.ts";

const LIMIT = { maxBytes: 100 };

function post(body: BodyInit, type: string | undefined, query = ""): Request {
  const headers: Record<string, string> = type === undefined ? {} : { "content-type": type };
  return new Request(`http://h/x${query}`, { method: "POST", body, headers });
}

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    pull(controller) {
      const next = chunks.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
  });
}

function isClientError(code: string, msgPart: string) {
  return (e: unknown) => {
    ok(e instanceof ClientError, String(e));
    strictEqual(e.code, code);
    ok(e.message.includes(msgPart), e.message);
    return true;
  };
}

Deno.test("readFields() reads a JSON object, turning numbers and booleans into strings", async () => {
  const fields = await readFields(
    post(
      JSON.stringify({ a: "x", n: 12, f: 1.5, b: true, z: null }),
      "application/json; charset=utf-8",
    ),
    LIMIT,
  );
  deepStrictEqual({ ...fields }, { a: "x", n: "12", f: "1.5", b: "true" });
});

Deno.test("L8: readFields() keeps & = + # in form-urlencoded values", async () => {
  const body = new URLSearchParams({ passwd: "a&b=c+d#e f%", mobile: "1" }).toString();
  const fields = await readFields(post(body, "application/x-www-form-urlencoded"), LIMIT);
  strictEqual(fields["passwd"], "a&b=c+d#e f%");
  strictEqual(fields["mobile"], "1");
});

Deno.test("readFields() decodes escaped UTF-8, + as space, and keys without a value", async () => {
  const fields = await readFields(
    post(
      "nickname=%E4%BD%A0+%F0%9F%98%80&flag&%61=b&nickname=second",
      "application/x-www-form-urlencoded",
    ),
    LIMIT,
  );
  deepStrictEqual({ ...fields }, { nickname: "你 😀", flag: "", a: "b" });
});

Deno.test("readFields() falls back to the query string and lets the body win", async () => {
  const fields = await readFields(
    post("id=2", "application/x-www-form-urlencoded", "?id=1&token=t"),
    LIMIT,
  );
  deepStrictEqual({ ...fields }, { id: "2", token: "t" });
  const get = await readFields(new Request("http://h/x?id=5&id=6"), LIMIT);
  deepStrictEqual({ ...get }, { id: "5" }, "first value wins");
});

Deno.test("readFields() accepts an empty body of any type", async () => {
  deepStrictEqual({ ...(await readFields(post("", "text/plain", "?a=1"), LIMIT)) }, { a: "1" });
});

Deno.test("readFields() rejects bad bodies with a clear message", async (t) => {
  const cases = [
    {
      name: "junk JSON",
      req: () => post("{nope", "application/json"),
      code: "bad_request",
      msg: "not valid JSON",
    },
    {
      name: "JSON array",
      req: () => post("[1]", "application/json"),
      code: "bad_request",
      msg: "must be an object",
    },
    {
      name: "JSON string",
      req: () => post('"x"', "application/json"),
      code: "bad_request",
      msg: "must be an object",
    },
    {
      name: "nested object",
      req: () => post('{"a":{"b":1}}', "application/json"),
      code: "bad_request",
      msg: 'Field "a" must be',
    },
    {
      name: "nested array",
      req: () => post('{"a":[1]}', "application/json"),
      code: "bad_request",
      msg: 'Field "a"',
    },
    {
      name: "bad UTF-8",
      req: () => post(new Uint8Array([0x61, 0x3d, 0xff]), "application/x-www-form-urlencoded"),
      code: "bad_request",
      msg: "UTF-8",
    },
    {
      name: "a form escape that is not UTF-8 (URLSearchParams made it U+FFFD)",
      req: () => post("nickname=%ff%fe", "application/x-www-form-urlencoded"),
      code: "bad_request",
      msg: 'Field "nickname" is not valid UTF-8',
    },
    {
      name: "an escaped surrogate half in a form",
      req: () => post("memo=a%ED%A0%80b", "application/x-www-form-urlencoded"),
      code: "bad_request",
      msg: 'Field "memo"',
    },
    {
      name: "a bad escape in the query string",
      req: () => new Request("http://h/x?id=1&nickname=%C3"),
      code: "bad_request",
      msg: 'Field "nickname"',
    },
    {
      name: "a JSON unpaired surrogate (was stored as U+FFFD)",
      req: () => post('{"memo":"a\\ud800b"}', "application/json"),
      code: "bad_request",
      msg: 'Field "memo" holds an unpaired UTF-16 surrogate',
    },
    {
      name: "text/plain body",
      req: () => post("a=1", "text/plain"),
      code: "unsupported_type",
      msg: "application/json",
    },
    {
      name: "no content type",
      req: () => post("a=1", undefined),
      code: "unsupported_type",
      msg: "application/json",
    },
    {
      name: "oversized",
      req: () => post("a=" + "x".repeat(200), "application/x-www-form-urlencoded"),
      code: "too_large",
      msg: "100 bytes",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await rejects(readFields(c.req(), LIMIT), isClientError(c.code, c.msg));
    });
  }
});

Deno.test("readLimited() stops a streamed body that lies about its length", async () => {
  const chunks = Array.from({ length: 10 }, () => new Uint8Array(30));
  const req = new Request("http://h/x", {
    method: "POST",
    body: streamOf(chunks),
    headers: { "content-length": "10" },
  });
  await rejects(readLimited(req, LIMIT), isClientError("too_large", "Body exceeds 100 bytes"));
  ok(chunks.length >= 5, "stopped reading early");
});

Deno.test("readLimited() returns a body at exactly the limit", async () => {
  const req = post(new Uint8Array(100).fill(7), "application/octet-stream");
  strictEqual((await readLimited(req, LIMIT)).byteLength, 100);
});

Deno.test("readLimited() joins a body sent in many tiny pieces, whatever length it declared", async () => {
  const bytes = Uint8Array.from({ length: 5000 }, (_, i) => i % 251);
  for (const declared of [undefined, "10", "5000"]) {
    const pieces = Array.from(bytes, (b) => Uint8Array.of(b));
    const req = new Request("http://h/x", {
      method: "POST",
      body: streamOf(pieces),
      ...(declared === undefined ? {} : { headers: { "content-length": declared } }),
    });
    deepStrictEqual(await readLimited(req, { maxBytes: 5000 }), bytes, `declared ${declared}`);
  }
});

Deno.test("readLimited() gives up on a body that does not arrive in time, with 408", async () => {
  let pulls = 0;
  const stalled = new ReadableStream<Uint8Array>({
    pull(controller) {
      // One piece, then nothing more: a client that went quiet.
      if (pulls++ === 0) controller.enqueue(new Uint8Array(10));
      return new Promise(() => {});
    },
  });
  const req = new Request("http://h/x", { method: "POST", body: stalled });
  await rejects(
    readLimited(req, { maxBytes: 100, timeoutMs: 50 }),
    isClientError("timeout", "Body not received within 1 s"),
  );
});

Deno.test("bodyChunks() hands out a body as it arrives and stops reading past the limit", async () => {
  let pulls = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      controller.enqueue(new Uint8Array(30));
    },
  });
  const req = new Request("http://h/x", { method: "POST", body: endless });
  const seen: number[] = [];
  await rejects(
    (async () => {
      for await (const chunk of bodyChunks(req, LIMIT)) seen.push(chunk.length);
    })(),
    isClientError("too_large", "Body exceeds 100 bytes"),
  );
  deepStrictEqual(seen, [30, 30, 30]);
  ok(pulls <= 6, `${pulls} pulls`);
});

Deno.test("bodyChunks() cancels the body when its caller stops early", async () => {
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(new Uint8Array(10));
    },
    cancel() {
      cancelled = true;
    },
  });
  const req = new Request("http://h/x", { method: "POST", body });
  for await (const chunk of bodyChunks(req, { maxBytes: 1000 })) {
    strictEqual(chunk.length, 10);
    break;
  }
  ok(cancelled);
});

Deno.test("parseJsonFields() drops nothing but nulls", () => {
  deepStrictEqual({ ...parseJsonFields('{"a":"","b":0,"c":false}') }, {
    a: "",
    b: "0",
    c: "false",
  });
});
