/** NATS header names of the contract (CONTRACT sections 2 and 5). */
export const Header = {
  /** The acting device, set by the Gateway from its authenticated socket. Required. */
  deviceId: 'Device-Id',
  /** The Gateway's socket id, for logs. */
  connectionId: 'Connection-Id',
  /** Correlation id, echoed in the reply and in every log line of the request. */
  requestId: 'Request-Id',
  /** A retried request with the same key from the same device returns the first reply. */
  idempotencyKey: 'Idempotency-Key',
  /** Status of an error reply (`400`, `404`, ...). */
  serviceErrorCode: 'Nats-Service-Error-Code',
  /** Message of an error reply. */
  serviceError: 'Nats-Service-Error',
  /** JetStream de-duplication id of a broadcast: `<lobby_id>:<id>`. */
  msgId: 'Nats-Msg-Id',
  /**
   * W3C trace context (`00-<trace_id>-<span_id>-<flags>`). On a request (NATS or HTTP): its
   * parent span, optional (read case-insensitively). On a broadcast (JetStream and the v1 sink
   * POST): the span of the request that caused it, in the same trace.
   */
  traceparent: 'traceparent',
} as const;

/** Largest accepted request body (256 KiB); larger ones answer `payload_too_large`. */
export const MAX_BODY_BYTES = 256 * 1024;
/**
 * Deepest accepted nesting of objects and arrays in a request body, counted from the body itself
 * (`{"room": {"walls": [...]}}` is 3 deep); deeper bodies answer `invalid_request`. Generous for
 * any room model or result, and it keeps a hostile body (256 KiB of `[` is 262,144 levels) from
 * exhausting a stack here or in a phone's JSON decoder.
 */
export const MAX_JSON_DEPTH = 64;
/** Longest accepted `Idempotency-Key`. */
export const MAX_IDEMPOTENCY_KEY = 128;
