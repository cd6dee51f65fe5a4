/**
 * The closed catalogue of client-facing failures. Each boundary (HTTP
 * handler, socket loop, bus receive loop) maps these to its own answer: an
 * envelope with an HTTP status, an error frame, or a close code.
 *
 * @module
 */

/** Every code a client can see, with its HTTP status and whether a retry can help. */
export const ERROR_CODES = {
  bad_request: { status: 400, retryable: false },
  unauthorized: { status: 401, retryable: false },
  forbidden: { status: 403, retryable: false },
  not_found: { status: 404, retryable: false },
  timeout: { status: 408, retryable: true },
  conflict: { status: 409, retryable: false },
  too_large: { status: 413, retryable: false },
  unsupported_type: { status: 415, retryable: false },
  limit_reached: { status: 422, retryable: false },
  rate_limited: { status: 429, retryable: true },
  unavailable: { status: 503, retryable: true },
} as const;

/** One of the names in {@linkcode ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * An error whose message is safe to show to the client that caused it.
 * Anything else that reaches a boundary is logged and answered generically.
 */
export class ClientError extends Error {
  /** The catalogue entry this error maps to. */
  readonly code: ErrorCode;

  /** Build a client-facing error; `message` is sentence case, no final period. */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ClientError";
    this.code = code;
  }

  /** The HTTP status for this error's code. */
  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  /** Whether the same request may succeed later. */
  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }
}

/** Thrown by a store when a unique rule (mobile, friendship) is broken. */
export class ConflictError extends ClientError {
  /** Build a conflict error with a client-safe message. */
  constructor(message: string, options?: ErrorOptions) {
    super("conflict", message, options);
    this.name = "ConflictError";
  }
}

/** Thrown by a store when a referenced row does not exist. */
export class NotFoundError extends ClientError {
  /** Build a not-found error with a client-safe message. */
  constructor(message: string, options?: ErrorOptions) {
    super("not_found", message, options);
    this.name = "NotFoundError";
  }
}

/** Thrown by a store when a per-user limit (groups per owner) is reached. */
export class LimitError extends ClientError {
  /** Build a limit error with a client-safe message. */
  constructor(message: string, options?: ErrorOptions) {
    super("limit_reached", message, options);
    this.name = "LimitError";
  }
}

/**
 * A refusal that a retry may get past after `retryAfterSeconds`, which
 * becomes the `Retry-After` header of an HTTP answer.
 */
export class RetryLaterError extends ClientError {
  /** Seconds until a retry can succeed (at least 1). */
  readonly retryAfterSeconds: number;

  /** Build the error; the message should say what to wait for. */
  constructor(
    code: ErrorCode,
    message: string,
    retryAfterSeconds: number,
    options?: ErrorOptions,
  ) {
    super(code, message, options);
    this.name = "RetryLaterError";
    this.retryAfterSeconds = Math.max(1, Math.ceil(retryAfterSeconds));
  }
}

/** Thrown when a rate limit refuses a request (code `rate_limited`, 429). */
export class RateLimitError extends RetryLaterError {
  /** Build a rate-limit error; the message should name the wait. */
  constructor(message: string, retryAfterSeconds: number, options?: ErrorOptions) {
    super("rate_limited", message, retryAfterSeconds, options);
    this.name = "RateLimitError";
  }
}

/** Thrown when the server is too busy to take a request now (code `unavailable`, 503). */
export class BusyError extends RetryLaterError {
  /** Build a busy error; the message should say what is busy. */
  constructor(message: string, retryAfterSeconds: number, options?: ErrorOptions) {
    super("unavailable", message, retryAfterSeconds, options);
    this.name = "BusyError";
  }
}
