/**
 * Pure parsers for the REST routes' fields. Each takes the flat string
 * fields of a request and returns a typed value or throws
 * `ClientError("bad_request", …)` naming the field at fault.
 *
 * @module
 */

import { ClientError } from "../errors.ts";
import type { ProfilePatch, Sex } from "../store.ts";
import type { Fields } from "./body.ts";

/** What `/user/register` needs; the password is still plain text here. */
export interface RegisterInput {
  readonly mobile: string;
  readonly password: string;
  readonly nickname: string;
  readonly avatar: string;
  readonly sex: Sex;
  readonly memo: string;
}

/** What `/user/login` needs. */
export interface LoginInput {
  readonly mobile: string;
  readonly password: string;
}

/** What `/contact/createcommunity` needs (the owner comes from the token). */
export interface CreateGroupInput {
  readonly name: string;
  readonly icon: string;
  readonly cate: number;
  readonly memo: string;
}

/** Shortest accepted password, in characters. */
export const PASSWORD_MIN = 6;
/** Longest accepted password, in characters. */
export const PASSWORD_MAX = 128;

const MOBILE = /^[\p{L}\p{N}+._@-]{1,20}$/u;
/**
 * What a name (nickname, group name) may not hold, because it would make
 * one name look like another, look empty, or rearrange what is shown
 * around it: every control character (line breaks too), every format
 * character (bidi marks, embeddings, overrides and isolates, zero-width
 * space and non-joiner, word joiner, soft hyphen, BOM, tags outside a
 * flag), the line and paragraph separators, and the letters that render as
 * blanks (combining grapheme joiner, Hangul fillers, Khmer inherent
 * vowels, braille blank). The zero-width joiner stays: emoji sequences
 * such as 👩‍💻 need it.
 */
const NAME_UNSAFE =
  /[\p{Cc}\p{Zl}\p{Zp}\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0]|(?!\u200d)\p{Cf}/u;
/** A subdivision flag (🏴 and tags ended by a cancel tag, e.g. England's): its tags are not hidden text. */
const FLAG_TAGS = /\u{1F3F4}[\u{E0020}-\u{E007E}]+\u{E007F}/gu;
const URLISH = /^(\/[^\s"'<>\\]*|https?:\/\/[^\s"'<>\\]+)$/;
const SEXES: readonly Sex[] = ["M", "W", "U"];

/** Parse `/user/register`: mobile, passwd, nickname, avatar, sex, memo. */
export function parseRegister(fields: Fields): RegisterInput {
  const { mobile, password } = parseLogin(fields);
  // Only new accounts: a login compares the mobile as it was registered.
  if (mobile.normalize("NFKC") !== mobile) {
    throw bad(
      `Mobile must be written in plain characters: "${
        mobile.normalize("NFKC")
      }", not full-width or other compatibility forms`,
    );
  }
  // The mobile is the nickname when none is given: it may not look blank either.
  if (NAME_UNSAFE.test(mobile)) {
    throw bad("Mobile must not hold characters that render as blanks");
  }
  if (password.length < PASSWORD_MIN) {
    throw bad(`Password must be at least ${PASSWORD_MIN} characters`);
  }
  const nickname = name(fields, "nickname", 20) || mobile;
  return {
    mobile,
    password,
    nickname,
    avatar: url(fields, "avatar", 150),
    sex: sex(fields) ?? "U",
    memo: text(fields, "memo", 140),
  };
}

/** Parse `/user/login`: mobile and passwd, both required. */
export function parseLogin(fields: Fields): LoginInput {
  const mobile = (fields["mobile"] ?? "").trim();
  if (mobile === "") throw bad("Mobile is required");
  if (!MOBILE.test(mobile)) {
    throw bad(
      "Mobile must be 1-20 letters, digits or + . _ @ - characters",
    );
  }
  const password = fields["passwd"] ?? "";
  if (password === "") throw bad("Password is required");
  if ([...password].length > PASSWORD_MAX) {
    throw bad(`Password must be at most ${PASSWORD_MAX} characters`);
  }
  return { mobile, password };
}

/** Parse `/user/update`: any of nickname, avatar, sex, memo; absent keeps. */
export function parseProfilePatch(fields: Fields): ProfilePatch {
  const patch: { -readonly [K in keyof ProfilePatch]: ProfilePatch[K] } = {};
  if (fields["nickname"] !== undefined) {
    const nickname = name(fields, "nickname", 20);
    if (nickname === "") throw bad("Nickname cannot be empty");
    patch.nickname = nickname;
  }
  if (fields["avatar"] !== undefined) patch.avatar = url(fields, "avatar", 150);
  const s = sex(fields);
  if (s !== undefined) patch.sex = s;
  if (fields["memo"] !== undefined) patch.memo = text(fields, "memo", 140);
  if (Object.keys(patch).length === 0) {
    throw bad("Nothing to update: send nickname, avatar, sex or memo");
  }
  return patch;
}

/** Parse `/contact/createcommunity`: name (required), icon, cate 0-4, memo. */
export function parseCreateGroup(fields: Fields): CreateGroupInput {
  const groupName = name(fields, "name", 30);
  if (groupName === "") throw bad("Group name is required");
  const rawCate = (fields["cate"] ?? "").trim();
  if (rawCate !== "" && !/^[0-4]$/.test(rawCate)) {
    throw bad('Field "cate" must be an integer from 0 to 4');
  }
  const cate = rawCate === "" ? 0 : Number(rawCate);
  return {
    name: groupName,
    icon: url(fields, "icon", 250),
    cate,
    memo: text(fields, "memo", 120),
  };
}

/** A required positive integer id field such as `id` or `dstid`. */
export function parseId(fields: Fields, name: string): number {
  const raw = (fields[name] ?? "").trim();
  if (raw === "") throw bad(`Field "${name}" is required`);
  const n = Number(raw);
  if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(n) || n < 1) {
    throw bad(`Field "${name}" must be a positive integer`);
  }
  return n;
}

function text(fields: Fields, name: string, max: number): string {
  const value = (fields[name] ?? "").trim();
  if ([...value].length > max) {
    throw bad(`Field "${name}" must be at most ${max} characters`);
  }
  // C1 controls (U+0080-U+009F) too: no text uses them, and some terminals act on them.
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(value)) {
    throw bad(`Field "${name}" contains control characters`);
  }
  return value;
}

/** A {@linkcode text} field shown as someone's or something's name: see {@linkcode NAME_UNSAFE}. */
function name(fields: Fields, field: string, max: number): string {
  const value = text(fields, field, max);
  if (NAME_UNSAFE.test(value.replace(FLAG_TAGS, "\u{1F3F4}"))) {
    throw bad(
      `Field "${field}" contains line breaks, invisible or direction-changing characters`,
    );
  }
  return value;
}

function url(fields: Fields, name: string, max: number): string {
  const value = text(fields, name, max);
  if (value !== "" && !URLISH.test(value)) {
    throw bad(`Field "${name}" must be a path like /mnt/x.png or an http URL`);
  }
  return value;
}

function sex(fields: Fields): Sex | undefined {
  const raw = (fields["sex"] ?? "").trim();
  if (raw === "") return undefined;
  const found = SEXES.find((s) => s === raw.toUpperCase());
  if (found === undefined) throw bad('Field "sex" must be M, W or U');
  return found;
}

function bad(message: string): ClientError {
  return new ClientError("bad_request", message);
}
