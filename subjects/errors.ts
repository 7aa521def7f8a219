/**
 * The closed table of error codes (CONTRACT section 2) and their statuses.
 *
 * Statuses double as the `Nats-Service-Error-Code` header on NATS and as the HTTP status of
 * the shim. Nothing else in the code spells an error code as a bare string.
 */
import { z } from 'zod';

export const ErrorStatus = {
  /** Body not JSON / not an object, schema violation, missing or bad `Device-Id`. */
  invalid_request: 400,
  /** HTTP only: missing or wrong internal token. */
  unauthorized: 401,
  /** Caller lacks the right (not admin, not a participant, wrong device for this step, kicked). */
  forbidden: 403,
  lobby_not_found: 404,
  session_not_found: 404,
  participant_not_found: 404,
  /** Join / start on a lobby that is not `open`, a session on a closed lobby (`details.state`). */
  lobby_not_open: 409,
  lobby_full: 409,
  /** Another joined participant holds this `role_slot_id` for the same role. */
  slot_taken: 409,
  /** A session lists a device whose role differs. */
  role_mismatch: 409,
  /** The lobby already has an unfinished session, or a role change / kick would touch it. */
  session_active: 409,
  /** The session's current phase does not accept this step (`details.phase`, `details.expected`). */
  wrong_phase: 409,
  /** A step on a completed or cancelled session. */
  session_finished: 409,
  payload_too_large: 413,
  /** Too many requests or wrong codes from one device (`details.retry_after_ms`). */
  rate_limited: 429,
  /** Unexpected failure; logged with its stack, never sent to the caller. */
  internal: 500,
  /**
   * The database or another dependency is down; retry (with the same `Idempotency-Key`: a change
   * whose commit was not acknowledged is then answered, never applied twice).
   */
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ErrorStatus;
export const ErrorCode = Object.fromEntries(Object.keys(ErrorStatus).map((k) => [k, k])) as {
  readonly [K in ErrorCode]: K;
};
export const errorCodes = Object.keys(ErrorStatus) as ErrorCode[];

/** Body of every error reply: `{"error": {code, message, details?}}`. */
export const ErrorBody = z.strictObject({
  error: z.strictObject({
    code: z.enum(errorCodes as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/** One schema problem, as listed in `details.issues` of an `invalid_request`. */
export interface Issue {
  /** Dotted path of the offending field (`speakers.0.device_id`), empty for the body itself. */
  path: string;
  message: string;
}
