/** allowedMethods(): the methods a route table serves a path with. */

import { deepStrictEqual } from "node:assert/strict";
import { allowedMethods } from "../lib/http/allowed_methods.ts";

const ROUTES = [
  { method: "ALL", path: "*" },
  { method: "POST", path: "/user/login" },
  { method: "GET", path: "/user/find" },
  { method: "POST", path: "/user/find" },
  { method: "GET", path: "/mnt/:name" },
  { method: "GET", path: "/asset/*" },
  { method: "GET", path: "/a.b" },
];

Deno.test("allowedMethods() reads methods off the route table; middleware does not count", () => {
  deepStrictEqual(allowedMethods(ROUTES, "/user/login"), ["POST"]);
  deepStrictEqual(allowedMethods(ROUTES, "/user/find"), ["GET", "HEAD", "POST"]);
  deepStrictEqual(allowedMethods(ROUTES, "/mnt/x.png"), ["GET", "HEAD"]);
  deepStrictEqual(allowedMethods(ROUTES, "/asset/css/app.css"), ["GET", "HEAD"]);
  deepStrictEqual(allowedMethods(ROUTES, "/nope"), []);
});

Deno.test("allowedMethods(): a parameter is one segment, and path text is literal", () => {
  deepStrictEqual(allowedMethods(ROUTES, "/mnt/a/b"), []);
  deepStrictEqual(allowedMethods(ROUTES, "/mnt/"), []);
  deepStrictEqual(allowedMethods(ROUTES, "/axb"), []);
  deepStrictEqual(allowedMethods(ROUTES, "/user/login/"), []);
});
