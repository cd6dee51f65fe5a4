/**
 * A headless Debian `chromium` driven by playwright-core, under Deno's
 * scoped permissions.
 *
 * Two things in playwright-core's bundle need help under Deno without
 * `--allow-all`, both at module load:
 * - the bundled `debug` package lists every environment variable
 *   (`Object.keys(process.env)`), which needs `--allow-env` without a list;
 *   so `process.env` becomes a plain object holding only the variables this
 *   process was allowed to read (it is also the environment chromium gets);
 * - `is-wsl` probes `/proc/sys/fs/binfmt_misc/WSLInterop` with
 *   `fs.existsSync`; Deno gates `/proc` behind `--allow-all` and its
 *   `existsSync` throws where Node's returns false, so `existsSync` gets
 *   Node's never-throw behaviour back.
 * The patch is made once, in this test module's own worker.
 *
 * Permissions: --allow-run=/usr/bin/chromium --allow-read=/usr/bin/chromium,/tmp
 * --allow-write=/tmp --allow-sys=homedir,osRelease
 * --allow-env=HOME,PATH,TMPDIR,TMP,TEMP,NODE_V8_COVERAGE (and whatever the test reads).
 */

import fs from "node:fs";
import process from "node:process";
import type { Browser, BrowserContext } from "playwright-core";

/** Where Debian installs chromium (`apt-get install chromium`). */
export const CHROMIUM = "/usr/bin/chromium";

/** Variables chromium and playwright may see. */
const ENV_PASSED = ["HOME", "PATH", "TMPDIR", "TMP", "TEMP"];

/** Flags that keep the browser off every network but loopback and quiet. */
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // Hold-to-talk: a fake microphone, granted without a prompt.
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
];

/** Whether chromium is installed here. */
export function hasChromium(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

function patchForDeno(): void {
  const env: Record<string, string> = {};
  for (const name of ENV_PASSED) {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") continue;
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  process.env = env;
  const existsSync = fs.existsSync;
  if (!Object.hasOwn(existsSync, "lanchatPatched")) {
    const patched = function (path: fs.PathLike): boolean {
      try {
        return existsSync(path);
      } catch {
        return false;
      }
    };
    Object.defineProperty(patched, "lanchatPatched", { value: true });
    fs.existsSync = patched;
  }
}

/** A launched browser; dispose closes it (and its temporary profile). */
export interface TestBrowser extends AsyncDisposable {
  readonly browser: Browser;
  /** A fresh context (own cookies and storage), closed with the browser. */
  newContext(options?: Parameters<Browser["newContext"]>[0]): Promise<BrowserContext>;
}

/** Launch headless chromium with a fresh profile. */
export async function launchBrowser(): Promise<TestBrowser> {
  patchForDeno();
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
  });
  return {
    browser,
    newContext: (options) => browser.newContext(options),
    async [Symbol.asyncDispose]() {
      await browser.close();
    },
  };
}
