/**
 * Catch what code prints with `console.warn` / `console.error` instead of
 * logging: the server logs through LogTape only, so a test can require that
 * nothing was printed around its logs.
 *
 * @module
 */

// deno-lint-ignore-file no-console -- replacing the console is the point here

import { deepStrictEqual } from "node:assert/strict";

/** What was printed while it is live; `using` puts the console back. */
export interface Printed extends Disposable {
  /** Fail, naming `context` and showing the first five lines, if anything was printed. */
  assertNone(context: string): void;
}

/** Start catching `console.warn` and `console.error` until disposed. */
export function catchPrinted(): Printed {
  const lines: string[] = [];
  const { warn, error } = console;
  const keep = (...args: unknown[]) => void lines.push(args.map(String).join(" "));
  console.warn = keep;
  console.error = keep;
  return {
    assertNone(context) {
      deepStrictEqual(lines.slice(0, 5), [], `${context}: ${lines.length} lines printed`);
    },
    [Symbol.dispose]() {
      console.warn = warn;
      console.error = error;
    },
  };
}
