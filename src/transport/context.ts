/** What a handler knows about the request it serves, whatever the transport. */
import type { Logger } from 'pino';
import type { IdempotencySpec } from './idempotency.js';

export interface CommandContext {
  /** The acting device (`Device-Id`, or the v1 body's device field over HTTP). */
  deviceId: string;
  requestId?: string;
  connectionId?: string;
  /** Child logger carrying request_id, device_id (and lobby_id / session_id when known). */
  log: Logger;
  /** Set when the request carries an `Idempotency-Key`: its first reply is stored with its effects. */
  idempotency?: IdempotencySpec;
  /**
   * W3C `traceparent` of the request's own span (a child of the caller's, or a new trace),
   * carried into the broadcasts it causes.
   */
  traceparent?: string;
  /** The subject served (aliases under their target), for metrics. */
  subject?: string;
  /** `performance.now()` when the request reached the dispatcher, for the request -> broadcast latency. */
  receivedAt?: number;
  /**
   * Told the lobby the command runs on once the lobby actor knows it (a command may name only a
   * code or a session): the request's last log line names it.
   */
  located?: (lobbyId: string) => void;
  /** Internal reads by the HTTP shim itself: no member check, no per-device rate limit. */
  trusted?: boolean;
}
