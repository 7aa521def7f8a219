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

/**
 * A statement failed because the database could not be reached: no connection could be had,
 * the connection was lost under it (reset, closed by the driver, ended by the server), or the
 * server refused it while shutting down or starting up. `src/db/sql.ts` decides from what
 * happened to the connection, not from message texts; the request becomes `unavailable`.
 */
export class DatabaseUnreachable extends Error {
  override readonly name = 'DatabaseUnreachable';
  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
  }
}

/** Network failures (Node's and undici's codes): the peer could not be reached or went away. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
]);

/** The SQLSTATE of a PostgreSQL error, if `err` is one. */
export function sqlStateOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * SQLSTATEs about the connection rather than the statement: class 08 (connection exception),
 * 57P01-57P03 (admin / crash shutdown, cannot connect now) and 53300 (too many connections).
 * Every other SQLSTATE is the server's answer to the statement itself (its data, its syntax, a
 * conflict): the server was reachable.
 */
export function isConnectionSqlState(state: string): boolean {
  return state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03' || state === '53300';
}

/** Errors of our clients (NATS, the sink, the relay) that mean "the other side is away", by type. */
const DEPENDENCY_ERROR_NAMES = new Set([
  'DatabaseUnreachable',
  'KnexTimeoutError',
  // NATS client
  'ConnectionError',
  'ClosedConnectionError',
  'DrainingConnectionError',
  'NoResponders',
  'RequestError',
  'TimeoutError',
  // fetch / AbortSignal.timeout
  'AbortError',
  // src/outbox
  'NatsDisconnected',
  'PublishInterrupted',
  'SinkRefused',
  'LeaseExpiring',
]);

/** `err` and its causes, outermost first (a bounded walk: causes can loop). */
function* causes(err: unknown): Generator<{ code?: unknown; name?: unknown; cause?: unknown }> {
  let e = err as { code?: unknown; name?: unknown; cause?: unknown } | null | undefined;
  for (let i = 0; e && typeof e === 'object' && i < 8; i++, e = e.cause as typeof e) yield e;
}

/**
 * Whether `err` says the database (or another dependency) could not be reached, by its type or
 * code: never by its message.
 */
export function isConnectionFailure(err: unknown): boolean {
  for (const e of causes(err)) {
    if (e instanceof UnavailableError || e instanceof DatabaseUnreachable) return true;
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return true;
    const state = sqlStateOf(e);
    if (state && isConnectionSqlState(state)) return true;
    if (e.name === 'KnexTimeoutError') return true;
  }
  return false;
}

/** Whether `err` is the database being out of reach (rather than, say, the v1 Gateway). */
export function isDatabaseOutage(err: unknown): boolean {
  for (const e of causes(err)) {
    if (e instanceof DatabaseUnreachable || e.name === 'KnexTimeoutError') return true;
    const state = sqlStateOf(e);
    if (state && isConnectionSqlState(state)) return true;
  }
  return false;
}

/**
 * Whether `err` is an expected, retried failure of a dependency (the database, NATS, the v1
 * Gateway): logged as one line with its `reason`, without a stack (CONTRACT section 4).
 */
export function isExpectedFailure(err: unknown): boolean {
  if (isConnectionFailure(err)) return true;
  for (const e of causes(err)) {
    if (typeof e.name === 'string' && DEPENDENCY_ERROR_NAMES.has(e.name)) return true;
    if (typeof e.code === 'string' && e.code.startsWith('UND_ERR_')) return true;
  }
  return false;
}

/** A one-line account of a failure and its causes, for a log line without a stack. */
export function reasonOf(err: unknown): string {
  const parts: string[] = [];
  for (const e of causes(err)) {
    const text = e instanceof Error ? e.message : String(e);
    const code = typeof e.code === 'string' && !text.includes(e.code) ? ` (${e.code})` : '';
    if (text || code) parts.push(`${text}${code}`);
  }
  return parts.length > 0 ? parts.join(': ') : String(err);
}

/**
 * The log fields of a failure: `{reason}` (one line) when it is an expected dependency failure,
 * `{err}` (with its stack) when it is not.
 */
export function failureFields(err: unknown): { reason: string } | { err: unknown } {
  return isExpectedFailure(err) ? { reason: reasonOf(err) } : { err };
}

const UNAVAILABLE_MESSAGE = 'the database is unavailable; try again';

/**
 * Anything thrown -> a `ServiceError` fit for the wire. Unknown errors become `internal`
 * (the caller sees a generic message; the original is returned as `cause` for the log).
 */
export function normalizeError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  if (isConnectionFailure(err)) return new UnavailableError(UNAVAILABLE_MESSAGE, err);
  return new ServiceError(ErrorCode.internal, 'internal error', undefined, { cause: err });
}

/** The database health monitor's answer about a failure (src/db/health.ts). */
export interface ReachabilityJudge {
  /** Whether `err` came from a statement that failed while the database was unreachable. */
  explains(err: unknown): Promise<boolean>;
}

/**
 * `normalizeError`, and for a failure it would call `internal`, the health monitor's verdict:
 * a statement that failed in a way of its own (no SQLSTATE, no known connection error) while
 * the database could not be reached is `unavailable` too.
 */
export async function classifyError(err: unknown, judge?: ReachabilityJudge): Promise<ServiceError> {
  const error = normalizeError(err);
  if (error.code !== ErrorCode.internal || !judge) return error;
  return (await judge.explains(err)) ? new UnavailableError(UNAVAILABLE_MESSAGE, err) : error;
}

/**
 * How a component logs a failure it will retry (the relay, the scheduler, the idempotency
 * purge): a database outage at debug, since the health monitor logs the outage once; another
 * expected failure (NATS, the v1 Gateway) at warn without a stack on the first of a streak and
 * at debug after; anything else with its stack, at warn on the first of a streak.
 */
export function retriedFailure(err: unknown, firstOfStreak: boolean): { level: 'warn' | 'debug'; fields: { reason: string } | { err: unknown } } {
  const fields = failureFields(err);
  if (isDatabaseOutage(err)) return { level: 'debug', fields };
  return { level: firstOfStreak ? 'warn' : 'debug', fields };
}
