/** A `postgres://` URL as the store reads it: host, port and TLS, as docs/config.md tabulates them. */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { pgConnectionConfig } from "../lib/_pg_dialect.ts";
import { pgAddress } from "../lib/_pg_url.ts";

Deno.test("pgAddress() takes ?host= over the URL's host, 5432 by default, IPv6 unbracketed", () => {
  deepStrictEqual(pgAddress("postgres://db.lan/chat"), { host: "db.lan", port: 5432 });
  deepStrictEqual(pgAddress("postgres://u@localhost:6543/chat?host=10.0.0.9"), {
    host: "10.0.0.9",
    port: 6543,
  });
  deepStrictEqual(pgAddress("postgres://[::1]:5433/chat"), { host: "::1", port: 5433 });
  deepStrictEqual(pgAddress("postgres:///chat"), { host: "localhost", port: 5432 });
});

Deno.test("pgConnectionConfig() maps sslmode as docs/config.md says", () => {
  const ssl = (mode?: string) =>
    pgConnectionConfig(`postgres://db.lan/chat${mode === undefined ? "" : `?sslmode=${mode}`}`)
      .ssl;
  for (const mode of [undefined, "disable", "prefer"]) strictEqual(ssl(mode), false, String(mode));
  for (const mode of ["require", "verify-ca", "verify-full"]) strictEqual(ssl(mode), true, mode);
  deepStrictEqual(ssl("no-verify"), { rejectUnauthorized: false });
});
