/** sniff(): the upload type allow-list decided on content (S9). */

import { deepStrictEqual } from "node:assert/strict";
import { sniff } from "../lib/sniff.ts";

function bytes(...parts: (string | number[])[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === "string") { for (const ch of p) out.push(ch.charCodeAt(0)); }
    else out.push(...p);
  }
  while (out.length < 32) out.push(0);
  return new Uint8Array(out);
}

const CASES = [
  {
    name: "png",
    input: bytes([0x89], "PNG\r\n", [0x1a, 0x0a]),
    want: { mime: "image/png", ext: "png" },
  },
  {
    name: "jpeg",
    input: bytes([0xff, 0xd8, 0xff, 0xe0]),
    want: { mime: "image/jpeg", ext: "jpg" },
  },
  { name: "gif89a", input: bytes("GIF89a"), want: { mime: "image/gif", ext: "gif" } },
  { name: "gif87a", input: bytes("GIF87a"), want: { mime: "image/gif", ext: "gif" } },
  {
    name: "webp",
    input: bytes("RIFF", [1, 2, 3, 4], "WEBPVP8 "),
    want: { mime: "image/webp", ext: "webp" },
  },
  {
    name: "wav",
    input: bytes("RIFF", [1, 2, 3, 4], "WAVEfmt "),
    want: { mime: "audio/wav", ext: "wav" },
  },
  { name: "mp3 with ID3", input: bytes("ID3", [4, 0]), want: { mime: "audio/mpeg", ext: "mp3" } },
  {
    name: "mp3 frame sync",
    input: bytes([0xff, 0xfb, 0x90, 0x64]),
    want: { mime: "audio/mpeg", ext: "mp3" },
  },
  { name: "ogg", input: bytes("OggS", [0]), want: { mime: "audio/ogg", ext: "ogg" } },
  {
    name: "webm",
    input: bytes([0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x84], "webm"),
    want: { mime: "video/webm", ext: "webm" },
  },
  {
    name: "mp4",
    input: bytes([0, 0, 0, 0x20], "ftypisom"),
    want: { mime: "video/mp4", ext: "mp4" },
  },
  {
    name: "m4a",
    input: bytes([0, 0, 0, 0x20], "ftypM4A "),
    want: { mime: "audio/mp4", ext: "m4a" },
  },
  { name: "html", input: bytes("<!doctype html><script>"), want: undefined },
  { name: "svg", input: bytes("<svg xmlns='http://www.w3.org/2000/svg'>"), want: undefined },
  { name: "svg after xml prolog", input: bytes("<?xml version='1.0'?><svg>"), want: undefined },
  { name: "plain text", input: bytes("hello world"), want: undefined },
  { name: "zip", input: bytes("PK", [3, 4]), want: undefined },
  {
    name: "heic (ftyp but not allowed)",
    input: bytes([0, 0, 0, 0x18], "ftypheic"),
    want: undefined,
  },
  {
    name: "matroska that is not webm",
    input: bytes([0x1a, 0x45, 0xdf, 0xa3], "matroska"),
    want: undefined,
  },
  { name: "ADTS AAC is not mp3", input: bytes([0xff, 0xf1, 0x50, 0x80]), want: undefined },
  { name: "empty", input: new Uint8Array(0), want: undefined },
  { name: "one byte", input: new Uint8Array([0xff]), want: undefined },
];

Deno.test("sniff() recognises allow-listed types by content and nothing else", async (t) => {
  for (const { name, input, want } of CASES) {
    await t.step(name, () => deepStrictEqual(sniff(input), want));
  }
});
