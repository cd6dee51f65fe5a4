/**
 * The JSON shapes of the original system's users and groups, mapped from the
 * store's camelCase rows. Only public fields: a user view never carries a
 * token, password hash or salt, and another user's view has no `mobile` (the
 * login name and a phone number: anyone could harvest them by walking ids,
 * and no seed page shows another user's).
 *
 * @module
 */

import type { Group, PublicUser, Sex } from "../store.ts";

/** A user as anyone logged in may see them (the seed's fields but `mobile`). */
export interface UserView {
  readonly id: number;
  readonly nickname: string;
  readonly avatar: string;
  readonly sex: Sex;
  readonly memo: string;
  /** RFC 3339 creation time. */
  readonly createat: string;
}

/** A user as they see themselves: the public view plus their `mobile`. */
export interface OwnUserView extends UserView {
  readonly mobile: string;
}

/** A group ("community") as the seed's clients read it. */
export interface GroupView {
  readonly id: number;
  readonly name: string;
  readonly ownerid: number;
  readonly icon: string;
  readonly cate: number;
  readonly memo: string;
  /** RFC 3339 creation time. */
  readonly createat: string;
}

/** The view of `user` for someone else; lists fields explicitly so nothing else leaks. */
export function userView(user: PublicUser): UserView {
  return {
    id: user.id,
    nickname: publicNickname(user),
    avatar: user.avatar,
    sex: user.sex,
    memo: user.memo,
    createat: new Date(user.createdAt).toISOString(),
  };
}

/** The view of `user` for themselves (register, login, update, finding yourself). */
export function ownUserView(user: PublicUser): OwnUserView {
  return { ...userView(user), nickname: user.nickname, mobile: user.mobile };
}

/**
 * The nickname others see: a registration without one takes the mobile as
 * its nickname (as the original did), which would show the number to
 * everyone; others see "User <id>" instead until its owner picks a name.
 */
function publicNickname(user: PublicUser): string {
  return user.nickname === user.mobile ? `User ${user.id}` : user.nickname;
}

/** The view of `user` as `viewerId` may see it: their own with the mobile, anyone else's without. */
export function userViewFor(user: PublicUser, viewerId: number): UserView | OwnUserView {
  return user.id === viewerId ? ownUserView(user) : userView(user);
}

/** The view of a group. */
export function groupView(group: Group): GroupView {
  return {
    id: group.id,
    name: group.name,
    ownerid: group.ownerId,
    icon: group.icon,
    cate: group.cate,
    memo: group.memo,
    createat: new Date(group.createdAt).toISOString(),
  };
}
