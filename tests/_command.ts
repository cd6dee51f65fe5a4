/** Running host commands (ip, tc, iptables) from tests that build network namespaces. */

/** Run a command; never throws. */
export async function run(
  cmd: string,
  args: string[],
): Promise<{ ok: boolean; out: string; err: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
    return { ok: r.success, out: text(r.stdout), err: text(r.stderr) };
  } catch (error) {
    return { ok: false, out: "", err: String(error) };
  }
}

/** Run a command; its stdout, or a throw naming it. */
export async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (!r.ok) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.err}`);
  return r.out;
}
