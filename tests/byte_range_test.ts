/** parseRange(): the one byte range a download asks for (lib/http/byte_range.ts). */

import { deepStrictEqual } from "node:assert/strict";
import { parseRange } from "../lib/http/byte_range.ts";

Deno.test("parseRange() reads one range, a suffix, an open end; the rest means the whole file", async (t) => {
  const cases: [string | null, number, ReturnType<typeof parseRange>][] = [
    [null, 100, undefined],
    ["bytes=0-9", 100, { start: 0, end: 9 }],
    ["bytes=90-", 100, { start: 90, end: 99 }],
    ["bytes=90-500", 100, { start: 90, end: 99 }],
    ["bytes=-10", 100, { start: 90, end: 99 }],
    ["bytes=-500", 100, { start: 0, end: 99 }],
    ["Bytes = 5 - 5", 100, { start: 5, end: 5 }],
    ["bytes=100-", 100, "unsatisfiable"],
    ["bytes=-0", 100, "unsatisfiable"],
    ["bytes=0-0", 0, "unsatisfiable"],
    ["bytes=9-0", 100, undefined],
    ["bytes=0-1,5-6", 100, undefined],
    ["items=0-1", 100, undefined],
    ["bytes=-", 100, undefined],
    ["bytes=99999999999999999999-", 100, undefined],
    ["bytes=a-b", 100, undefined],
  ];
  for (const [header, size, want] of cases) {
    await t.step(`${header} of ${size}`, () => deepStrictEqual(parseRange(header, size), want));
  }
});
