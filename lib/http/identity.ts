/**
 * Who is calling: the token from the request (Bearer header, the
 * `lanchat_token` cookie, or the seed's `token` field) resolved to a user id.
 * An old-style `userid` / `ownerid` field is only ever compared with that
 * user, never trusted on its own.
 *
 * @module
 */

import type { TokenVerifier } from "../auth.ts";
import { ClientError } from "../errors.ts";

/** Name of the login cookie. */
export const TOKEN_COOKIE = "lanchat_token";

/** Fields that old clients send to say who they are. */
const CLAIM_FIELDS = ["userid", "ownerid"] as const;

/**
 * The token a request carries, in this order: `Authorization: Bearer`, the
 * `token` field (query or body), then the `lanchat_token` cookie; undefined
 * when none. A token the request names beats the cookie the browser sends
 * anyway: an old page passing `?token=` in a browser that still holds an
 * expired (or another account's) cookie from the bundled client got 401
 * (or 403).
 */
export function tokenFromRequest(
  req: Request,
  fields?: Readonly<Record<string, string>>,
): string | undefined {
  const auth = req.headers.get("authorization");
  const bearer = auth?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
  if (bearer !== undefined) return bearer;
  const field = fields?.["token"];
  if (field !== undefined && field !== "") return field;
  const cookie = cookieValue(req.headers.get("cookie"), TOKEN_COOKIE);
  return cookie === undefined || cookie === "" ? undefined : cookie;
}

/**
 * The id of the user the request's token belongs to. Throws
 * `ClientError("unauthorized")` without a valid token, and
 * `ClientError("forbidden")` when a `userid` or `ownerid` field names
 * someone else.
 */
export async function requireUser(
  auth: TokenVerifier,
  req: Request,
  fields?: Readonly<Record<string, string>>,
): Promise<number> {
  const token = tokenFromRequest(req, fields);
  if (token === undefined) {
    throw new ClientError("unauthorized", "Please log in first");
  }
  const userId = await auth.resolveToken(token);
  if (userId === undefined) {
    throw new ClientError(
      "unauthorized",
      "Login expired or invalid, please log in again",
    );
  }
  checkClaims(userId, fields);
  return userId;
}

/**
 * Throws `ClientError("forbidden")` when a `userid` or `ownerid` field of
 * `fields` names someone other than `userId`.
 */
export function checkClaims(
  userId: number,
  fields?: Readonly<Record<string, string>>,
): void {
  for (const name of CLAIM_FIELDS) {
    const claim = fields?.[name];
    if (claim === undefined || claim.trim() === "") continue;
    if (Number(claim) !== userId) {
      throw new ClientError(
        "forbidden",
        `Field "${name}" does not match the logged-in user`,
      );
    }
  }
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(
  header: string | null,
  name: string,
): string | undefined {
  if (header === null) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    const raw = part.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    try {
      return decodeURIComponent(raw);
    } catch {
      return undefined;
    }
  }
  return undefined;
}
