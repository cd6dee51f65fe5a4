/**
 * `/contact/*`: friends and groups ("communities") of the calling user. The
 * user is always the token's; `userid` / `ownerid` fields are only checked.
 * Friend adds and group joins or creations are rate limited per user
 * (`AbuseLimits`): they stay instant and mutual, as in the original, but one
 * account cannot reach everyone at once.
 *
 * @module
 */

import { Hono } from "hono";
import { getLogger } from "@logtape/logtape";
import { ClientError } from "../errors.ts";
import { readFields } from "./body.ts";
import { list, ok } from "./envelope.ts";
import { parseCreateGroup, parseId } from "./forms.ts";
import { requireUser } from "./identity.ts";
import type { MembershipChange, RouteDeps } from "./route_deps.ts";
import { groupView, userView } from "./views.ts";

const logger = getLogger(["chat", "http", "contact"]);

/** The `/contact/*` routes. */
export function contactRoutes(deps: RouteDeps): Hono {
  const { store, auth, config } = deps;
  const limit = { maxBytes: config.bodyMaxBytes };
  const app = new Hono();
  const notify = (change: MembershipChange): void => {
    try {
      deps.onMembershipChange?.(change);
    } catch (error) {
      logger.error("Membership hook failed", { kind: change.kind, error });
    }
  };

  app.post("/contact/addfriend", async (c) => {
    const fields = await readFields(c.req.raw, limit);
    const userId = await requireUser(auth, c.req.raw, fields);
    const dstid = parseId(fields, "dstid");
    if (dstid === userId) {
      throw new ClientError("bad_request", "You cannot add yourself as a friend");
    }
    // Every try counts, 404 and 409 too: each answer says whether an id is taken.
    deps.limits?.friendAdd(userId);
    const friend = await store.findUser(dstid);
    if (friend === undefined) {
      throw new ClientError("not_found", "No user with this id");
    }
    const result = await store.addFriendship(userId, dstid, deps.now());
    if (result === "exists") {
      throw new ClientError("conflict", "You are already friends");
    }
    notify({ kind: "friend_added", userId, friendId: dstid });
    logger.info("User {userId} added friend {friendId}", {
      userId,
      friendId: dstid,
    });
    return c.json(ok(userView(friend), "Friend added"));
  });

  app.on(["GET", "POST"], "/contact/loadfriend", async (c) => {
    const fields = await readFields(c.req.raw, limit);
    const userId = await requireUser(auth, c.req.raw, fields);
    const friends = await store.listFriends(userId);
    return c.json(list(friends.map(userView)));
  });

  app.post("/contact/createcommunity", async (c) => {
    const fields = await readFields(c.req.raw, limit);
    const userId = await requireUser(auth, c.req.raw, fields);
    const input = parseCreateGroup(fields);
    deps.limits?.groupJoin(userId);
    const group = await store.createGroup(
      { ...input, ownerId: userId },
      { now: deps.now(), maxPerOwner: config.groupsPerUser },
    );
    notify({ kind: "group_joined", userId, groupId: group.id, seq: 0 });
    logger.info("User {userId} created group {groupId}", {
      userId,
      groupId: group.id,
    });
    return c.json(ok(groupView(group), "Group created"));
  });

  app.on(["GET", "POST"], "/contact/loadcommunity", async (c) => {
    const fields = await readFields(c.req.raw, limit);
    const userId = await requireUser(auth, c.req.raw, fields);
    const groups = await store.listGroups(userId);
    return c.json(list(groups.map(groupView)));
  });

  app.post("/contact/joincommunity", async (c) => {
    const fields = await readFields(c.req.raw, limit);
    const userId = await requireUser(auth, c.req.raw, fields);
    const groupId = parseId(fields, "dstid");
    deps.limits?.groupJoin(userId);
    const group = await store.findGroup(groupId);
    if (group === undefined) {
      throw new ClientError("not_found", "No group with this id");
    }
    // Read before the join commits: a message stored after it has a higher
    // seq, so the member's sessions on every node get it, whichever of its
    // envelope and the join's reaches a node first (docs/cluster.md).
    const [newest] = await store.listMessages(`g:${groupId}`, {
      beforeSeq: Number.MAX_SAFE_INTEGER,
      limit: 1,
    });
    const result = await store.joinGroup(userId, groupId, deps.now());
    // "Already a member" too: a retry of a join whose answer was lost (a 503
    // after its commit) is the only chance to tell the other nodes. Indexing
    // a member twice changes nothing.
    notify({ kind: "group_joined", userId, groupId, seq: newest?.seq ?? 0 });
    const msg = result === "joined" ? "Joined the group" : "Already a member";
    return c.json(ok(groupView(group), msg));
  });

  return app;
}
