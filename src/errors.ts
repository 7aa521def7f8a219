/**
 * Typed errors and the one function that turns anything thrown into a wire error.
 *
 * Handlers throw `ServiceError`s for the outcomes the contract names; everything else is an
 * `internal` (logged with its cause, never sent) or, for a dependency that is down,
 * `unavailable`.
 */
import { ErrorStatus, type ErrorBody, ErrorCode, type Issue, MAX_BODY_BYTES } from '../subjects/index.js';

export type Details = Record<string, unknown>;

/** An outcome of the contract's error table, safe to send to the caller as is. */
export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Details,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
  get status(): number {
    return ErrorStatus[this.code];
  }
}

/** A dependency (database, NATS) failed; the request changed nothing and may be retried. */
export class UnavailableError extends ServiceError {
  constructor(message: string, cause?: unknown) {
    super('unavailable', message, undefined, { cause });
  }
}

/** Shorthand constructors for the common outcomes. */
export const fail = {
  invalid: (message: string, issues?: Issue[]) =>
    new ServiceError(ErrorCode.invalid_request, message, issues ? { issues } : undefined),
  forbidden: (message: string) => new ServiceError(ErrorCode.forbidden, message),
  lobbyNotFound: () => new ServiceError(ErrorCode.lobby_not_found, 'lobby not found'),
  sessionNotFound: () => new ServiceError(ErrorCode.session_not_found, 'session not found'),
  participantNotFound: (deviceId: string) =>
    new ServiceError(ErrorCode.participant_not_found, `device ${deviceId} has not joined this lobby`),
  /** A request body over 256 KiB, on NATS and HTTP alike. */
  payloadTooLarge: () =>
    new ServiceError(ErrorCode.payload_too_large, `request body is over ${MAX_BODY_BYTES} bytes`, {
      max_bytes: MAX_BODY_BYTES,
    }),
} as const;

/** A wire error: status plus the `{"error": ...}` body. */
export interface WireError {
  status: number;
  body: ErrorBody;
}

export function toWire(err: ServiceError): WireError {
  const error: ErrorBody['error'] = { code: err.code, message: err.message };
  if (err.details) error.details = err.details;
  return { status: err.status, body: { error } };
}

/** PostgreSQL / driver failures that mean "the database is not reachable right now". */
const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '08000',
  '08001',
  '08003',
  '08006',
  '53300', // too_many_connections
]);

function isConnectionFailure(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown; name?: unknown } | undefined, i = 0; e && i < 5; i++) {
    if (typeof e.code === 'string' && CONNECTION_ERRORS.has(e.code)) return true;
    if (e.name === 'KnexTimeoutError') return true;
    if (typeof e === 'object' && 'message' in e && /Connection terminated|connect ECONNREFUSED/.test(String((e as Error).message))) {
      return true;
    }
    e = e.cause as typeof e;
  }
  return false;
}

/**
 * Anything thrown -> a `ServiceError` fit for the wire. Unknown errors become `internal`
 * (the caller sees a generic message; the original is returned as `cause` for the log).
 */
export function normalizeError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  if (isConnectionFailure(err)) {
    return new UnavailableError('the database is unavailable; nothing was changed', err);
  }
  return new ServiceError(ErrorCode.internal, 'internal error', undefined, { cause: err });
}
