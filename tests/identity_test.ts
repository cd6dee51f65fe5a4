/** tokenFromRequest() and requireUser(): identity from the token only (S2). */

import { ok, rejects, strictEqual } from "node:assert/strict";
import type { TokenVerifier } from "../lib/auth.ts";
import { ClientError } from "../lib/errors.ts";
import { cookieValue, requireUser, tokenFromRequest } from "../lib/http/identity.ts";

const verifier: TokenVerifier = {
  resolveToken: (token) => Promise.resolve(token === "good" ? 5 : undefined),
};

function req(headers: Record<string, string> = {}): Request {
  return new Request("http://h/x", { headers });
}

Deno.test("tokenFromRequest() prefers Bearer, then the token field, then the cookie", async (t) => {
  const cases = [
    {
      name: "bearer wins",
      headers: { authorization: "Bearer b", cookie: "lanchat_token=c" },
      fields: { token: "f" },
      want: "b",
    },
    {
      // An old page's own token, in a browser holding the bundled client's (maybe stale) cookie.
      name: "the field the request names beats the cookie",
      headers: { cookie: "a=1; lanchat_token=c; z=2" },
      fields: { token: "f" },
      want: "f",
    },
    { name: "cookie last", headers: { cookie: "lanchat_token=c" }, fields: {}, want: "c" },
    {
      name: "basic auth is not a token",
      headers: { authorization: "Basic eA==" },
      fields: {},
      want: undefined,
    },
    {
      name: "empty cookie and field",
      headers: { cookie: "lanchat_token=" },
      fields: { token: "" },
      want: undefined,
    },
    { name: "nothing", headers: {}, fields: undefined, want: undefined },
  ];
  for (const c of cases) {
    await t.step(c.name, () => strictEqual(tokenFromRequest(req(c.headers), c.fields), c.want));
  }
});

Deno.test("cookieValue() finds one cookie by exact name", () => {
  strictEqual(cookieValue("xlanchat_token=1; lanchat_token=2", "lanchat_token"), "2");
  strictEqual(cookieValue(null, "a"), undefined);
  strictEqual(cookieValue("a=%E0", "a"), undefined);
});

function isClientError(code: string) {
  return (e: unknown) => {
    ok(e instanceof ClientError);
    strictEqual(e.code, code);
    return true;
  };
}

Deno.test("S2: requireUser() trusts the token, checks userid/ownerid against it", async () => {
  strictEqual(await requireUser(verifier, req({ authorization: "Bearer good" })), 5);
  strictEqual(await requireUser(verifier, req(), { token: "good", userid: "5", ownerid: "5" }), 5);
  strictEqual(await requireUser(verifier, req(), { token: "good", userid: "" }), 5);
  await rejects(requireUser(verifier, req(), { userid: "5" }), isClientError("unauthorized"));
  await rejects(
    requireUser(verifier, req(), { token: "bad", userid: "5" }),
    isClientError("unauthorized"),
  );
  await rejects(
    requireUser(verifier, req(), { token: "good", userid: "6" }),
    isClientError("forbidden"),
  );
  await rejects(
    requireUser(verifier, req(), { token: "good", ownerid: "x" }),
    isClientError("forbidden"),
  );
});
