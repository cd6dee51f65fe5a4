/** allowedMethods(): the methods a route table serves a path with. */

import { deepStrictEqual } from "node:assert/strict";
import { allowedMethods } from "../lib/http/allowed_methods.ts";

const methodsOf = allowedMethods([
  { method: "ALL", path: "*" },
  { method: "POST", path: "/user/login" },
  { method: "GET", path: "/user/find" },
  { method: "POST", path: "/user/find" },
  { method: "GET", path: "/mnt/:name" },
  { method: "GET", path: "/asset/*" },
  { method: "GET", path: "/a.b" },
  { method: "PUT", path: "/x/*/y" },
]);

Deno.test("allowedMethods() reads methods off the route table; middleware does not count", () => {
  deepStrictEqual(methodsOf("/user/login"), ["POST"]);
  deepStrictEqual(methodsOf("/user/find"), ["GET", "HEAD", "POST"]);
  deepStrictEqual(methodsOf("/mnt/x.png"), ["GET", "HEAD"]);
  deepStrictEqual(methodsOf("/asset/css/app.css"), ["GET", "HEAD"]);
  deepStrictEqual(methodsOf("/asset"), ["GET", "HEAD"], "Hono's trailing * matches nothing too");
  deepStrictEqual(methodsOf("/nope"), []);
});

Deno.test("allowedMethods(): a parameter is one segment, and path text is literal", () => {
  deepStrictEqual(methodsOf("/mnt/a/b"), []);
  deepStrictEqual(methodsOf("/mnt/"), []);
  deepStrictEqual(methodsOf("/axb"), []);
  deepStrictEqual(methodsOf("/user/login/"), []);
  deepStrictEqual(methodsOf("/x/1/y"), ["PUT"]);
  deepStrictEqual(methodsOf("/x/1/2/y"), [], "a * inside a path is one segment");
  deepStrictEqual(methodsOf("/assets"), []);
});
