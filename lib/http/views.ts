/**
 * The JSON shapes of the original system's users and groups, mapped from the
 * store's camelCase rows. Only public fields: a user view never carries a
 * token, password hash or salt.
 *
 * @module
 */

import type { Group, PublicUser, Sex } from "../store.ts";

/** A user as the seed's clients read it. */
export interface UserView {
  readonly id: number;
  readonly mobile: string;
  readonly nickname: string;
  readonly avatar: string;
  readonly sex: Sex;
  readonly memo: string;
  /** RFC 3339 creation time. */
  readonly createat: string;
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

/** The public view of a user; lists fields explicitly so nothing else leaks. */
export function userView(user: PublicUser): UserView {
  return {
    id: user.id,
    mobile: user.mobile,
    nickname: user.nickname,
    avatar: user.avatar,
    sex: user.sex,
    memo: user.memo,
    createat: new Date(user.createdAt).toISOString(),
  };
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
