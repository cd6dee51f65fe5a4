/**
 * `/user/*`: register, login, logout, find and update. Identity comes from the
 * token; responses carry the caller's own token only on register and login,
 * and a `mobile` only in the caller's own profile.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import { deleteCookie, setCookie } from "hono/cookie";
import { getLogger } from "@logtape/logtape";
import { clientAddress, peerAddress, viaHttps } from "../abuse_limits.ts";
import { ClientError } from "../errors.ts";
import { readFields } from "./body.ts";
import { ok } from "./envelope.ts";
import { parseId, parseLogin, parseProfilePatch, parseRegister } from "./forms.ts";
import { requireUser, TOKEN_COOKIE, tokenFromRequest } from "./identity.ts";
import type { RouteDeps } from "./route_deps.ts";
import { ownUserView, userViewFor } from "./views.ts";

const logger = getLogger(["chat", "http", "user"]);

/** The `/user/*` routes. */
export function userRoutes(deps: RouteDeps): Hono {
  const { store, auth, config } = deps;
  const limit = { maxBytes: config.bodyMaxBytes };
  const trustedProxies = deps.limits?.settings.trustedProxies ?? [];
  const app = new Hono();

  app.post("/user/register", async (c) => {
    const input = parseRegister(await readFields(c.req.raw, limit));
    // Before the password hash: each costs a node real CPU.
    const limits = deps.limits;
    limits?.register(
      clientAddress(peerAddress(c.env), c.req.raw.headers, limits.settings.trustedProxies),
    );
    const passwordHash = await auth.hashPassword(input.password);
    const user = await store.createUser({
      mobile: input.mobile,
      passwordHash,
      nickname: input.nickname,
      avatar: input.avatar,
      sex: input.sex,
      memo: input.memo,
    }, deps.now());
    const token = await auth.issueToken(user.id);
    setTokenCookie(c, token, config.tokenTtlSeconds, trustedProxies);
    logger.info("User {userId} registered", { userId: user.id });
    return c.json(ok({ ...ownUserView(user), token }, "Registered"));
  });

  app.post("/user/login", async (c) => {
    const input = parseLogin(await readFields(c.req.raw, limit));
    const limits = deps.limits;
    const address = limits === undefined
      ? ""
      : clientAddress(peerAddress(c.env), c.req.raw.headers, limits.settings.trustedProxies);
    // Keyed by the mobile as typed, so the answer is the same for unknown mobiles.
    limits?.checkLogin(input.mobile, address);
    let result;
    try {
      result = await auth.login(input.mobile, input.password);
    } catch (e) {
      if (e instanceof ClientError) logger.info("Login failed", {});
      if (e instanceof ClientError && e.code === "unauthorized") {
        limits?.loginFailed(input.mobile, address);
      }
      throw e;
    }
    limits?.loginSucceeded(input.mobile);
    setTokenCookie(c, result.token, config.tokenTtlSeconds, trustedProxies);
    logger.info("User {userId} logged in", { userId: result.user.id });
    return c.json(ok({ ...ownUserView(result.user), token: result.token }, ""));
  });

  app.post("/user/logout", async (c) => {
    const fields = await readFields(c.req.raw, limit);
    const token = tokenFromRequest(c.req.raw, fields);
    if (token !== undefined) await auth.revokeToken(token);
    deleteCookie(c, TOKEN_COOKIE, { path: "/" });
    return c.json(ok(undefined, "Logged out"));
  });

  app.on(["GET", "POST"], "/user/find", async (c) => {
    const fields = await readFields(c.req.raw, limit);
    const userId = await requireUser(auth, c.req.raw, fields);
    const id = parseId(fields, "id");
    // Finding yourself tells nothing new (the web client does it on every load).
    if (id !== userId) await countLookup(deps, userId, id);
    const user = await store.findUser(id);
    if (user === undefined) throw new ClientError("not_found", "User not found");
    return c.json(ok(userViewFor(user, userId), ""));
  });

  app.post("/user/update", async (c) => {
    const fields = await readFields(c.req.raw, limit);
    const userId = await requireUser(auth, c.req.raw, fields);
    const patch = parseProfilePatch(fields);
    const user = await store.updateProfile(userId, patch);
    if (user === undefined) throw new ClientError("not_found", "User not found");
    return c.json(ok(ownUserView(user), "Profile updated"));
  });

  return app;
}

/**
 * Count `userId`'s lookup of user `id` against the lookup rate. Past it, a
 * friend or someone in a group with the caller is still answered (not
 * counted): the limit is against walking the ids of strangers, and a large
 * group's history names many members the client has to look up.
 */
async function countLookup(deps: RouteDeps, userId: number, id: number): Promise<void> {
  const limits = deps.limits;
  if (limits === undefined) return;
  if (!limits.canLookup(userId) && await related(deps.store, userId, id)) return;
  limits.lookup(userId);
}

/** Whether users `a` and `b` are friends or share a group. */
async function related(store: RouteDeps["store"], a: number, b: number): Promise<boolean> {
  if (await store.areFriends(a, b)) return true;
  const [mine, theirs] = await Promise.all([store.listGroups(a), store.listGroups(b)]);
  const ids = new Set(mine.map((g) => g.id));
  return theirs.some((g) => ids.has(g.id));
}

function setTokenCookie(
  c: Context,
  token: string,
  ttlSeconds: number,
  trustedProxies: readonly string[],
): void {
  setCookie(c, TOKEN_COOKIE, token, {
    httpOnly: true,
    sameSite: "Strict",
    path: "/",
    maxAge: ttlSeconds,
    secure: viaHttps(c.req.url, peerAddress(c.env), c.req.raw.headers, trustedProxies),
  });
}
