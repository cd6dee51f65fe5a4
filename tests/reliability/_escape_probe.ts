/**
 * Run by least_privilege_test.ts under exactly the `start` task's
 * permissions, from the checkout's root, with CHAT_DATA set as for the
 * server. It does what server code would do if our own name checks were
 * bypassed — join a `../` name onto the uploads or templates folder and
 * open it — and prints, as one JSON line, which attempts Deno refused.
 */

import { join } from "node:path";

const dataDir = Deno.env.get("CHAT_DATA") ?? "./data";
const uploadsDir = join(dataDir, "mnt");
const templatesDir = "templates";

/** "ok" when allowed, else the error's name (NotCapable for the permission wall). */
async function attempt(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return "ok";
  } catch (error) {
    return error instanceof Error ? error.name : String(error);
  }
}

const depth = "../".repeat(12);
const result = {
  readUploadTraversal: await attempt(() => Deno.readFile(join(uploadsDir, `${depth}etc/passwd`))),
  readTemplateTraversal: await attempt(() =>
    Deno.readTextFile(join(templatesDir, `${depth}etc/passwd`))
  ),
  readAbsolute: await attempt(() => Deno.readTextFile("/etc/passwd")),
  readTmp: await attempt(() => Deno.readDir("/tmp")[Symbol.asyncIterator]().next()),
  writeUploadTraversal: await attempt(() =>
    Deno.writeTextFile(join(uploadsDir, "../../../escaped.html"), "<script>")
  ),
  writeTemplate: await attempt(() => Deno.writeTextFile(join(templatesDir, "evil.html"), "x")),
  writeTmp: await attempt(() => Deno.writeTextFile("/tmp/lanchat_escaped.txt", "x")),
  // Outside the grants though inside the checkout: its config and code.
  readInsideCheckout: await attempt(() => Deno.readTextFile(join(templatesDir, "../deno.json"))),
  // Inside the grants: reading pages and assets, and writing the data folder, are allowed.
  readTemplate: await attempt(() => Deno.readDir(templatesDir)[Symbol.asyncIterator]().next()),
  readStatic: await attempt(() => Deno.readDir("static")[Symbol.asyncIterator]().next()),
  writeInsideData: await attempt(() => Deno.writeTextFile(join(uploadsDir, "probe.txt"), "x")),
  runProcess: await attempt(() => new Deno.Command("sh", { args: ["-c", "true"] }).output()),
  envOther: await attempt(() => Promise.resolve(Deno.env.get("HOME"))),
};
await Deno.stdout.write(new TextEncoder().encode(JSON.stringify(result) + "\n"));
