/**
 * Where each NATS header of the contract travels, for the AsyncAPI document. Keyed by `Header`
 * so that a header added to the contract does not compile until it is documented here.
 */
import {
  DeviceId,
  Header,
  MAX_IDEMPOTENCY_KEY,
  errorCodes,
  ErrorStatus,
} from '../../subjects/index.js';
import { inlineSchema, type Json } from './schemas.js';

/** The messages a header can appear on. */
export type HeaderPlace = 'request' | 'reply' | 'error' | 'broadcast';

interface HeaderDoc {
  on: HeaderPlace[];
  /** Places where it is always present (requests: where the service requires it). */
  required: HeaderPlace[];
  description: string;
  schema: Json;
}

const statuses = [...new Set(errorCodes.map((c) => String(ErrorStatus[c])))].sort();

export const HEADER_DOCS = {
  deviceId: {
    on: ['request'],
    required: ['request'],
    description:
      'The acting device, set by the Gateway from its authenticated socket (never taken from the body). ' +
      'Missing or malformed: `invalid_request`.',
    schema: inlineSchema(DeviceId, 'input'),
  },
  connectionId: {
    on: ['request'],
    required: [],
    description: "The Gateway's socket id; only logged.",
    schema: { type: 'string' },
  },
  requestId: {
    on: ['request', 'reply', 'error'],
    required: [],
    description: 'Correlation id; echoed on the reply (success or error) and in every log line of the request.',
    schema: { type: 'string' },
  },
  idempotencyKey: {
    on: ['request'],
    required: [],
    description:
      'A retry with the same key from the same device (same subject, same body) gets the first reply and ' +
      'changes nothing again. Successes and refusals a retry cannot change (403, 404, 409) are kept; ' +
      'reusing a key for another request is `invalid_request`.',
    schema: { type: 'string', minLength: 1, maxLength: MAX_IDEMPOTENCY_KEY },
  },
  serviceErrorCode: {
    on: ['error'],
    required: ['error'],
    description: 'The status of the error code (its HTTP status); present on every error reply and only there.',
    schema: { type: 'string', enum: statuses },
  },
  serviceError: {
    on: ['error'],
    required: ['error'],
    description: 'The error message (the body\'s `error.message`, line breaks replaced by spaces).',
    schema: { type: 'string' },
  },
  msgId: {
    on: ['broadcast'],
    required: ['broadcast'],
    description:
      '`<lobby_id>:<id>` of the broadcast: JetStream drops a re-publish within the stream\'s duplicate window.',
    schema: { type: 'string', pattern: '^[^:]+:[0-9]+$' },
  },
  traceparent: {
    on: ['request', 'broadcast'],
    required: [],
    description:
      'W3C trace context. On a request: the caller\'s span, optional; a malformed one is ignored and the ' +
      'request starts a new trace. The request runs as a child span (same trace id, a new span id), logged as ' +
      '`trace_id` / `span_id`. On a broadcast: that span of the request that caused it, or a new trace for ' +
      'an event of a deadline that fired (absent only on events written before traces were recorded).',
    schema: { type: 'string', pattern: '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' },
  },
} as const satisfies Record<keyof typeof Header, HeaderDoc>;

/** The JSON Schema of the headers a message of `place` carries. */
export function headersSchema(place: HeaderPlace): Json {
  const properties: Record<string, Json> = {};
  const required: string[] = [];
  for (const [key, doc] of Object.entries(HEADER_DOCS) as Array<[keyof typeof Header, HeaderDoc]>) {
    if (!doc.on.includes(place)) continue;
    const name = Header[key];
    properties[name] = { ...doc.schema, description: doc.description };
    if (doc.required.includes(place)) required.push(name);
  }
  return { type: 'object', properties, ...(required.length ? { required } : {}) };
}
