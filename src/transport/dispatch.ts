/**
 * The one handler wrapper every transport goes through: size limit, JSON decoding, identity
 * (`Device-Id`), rate limits, schema validation, idempotency, the handler itself, and the
 * mapping of whatever it throws to a wire error. NATS and HTTP differ only in how they read
 * a request and write the outcome.
 */
import {
  DeviceId,
  MAX_BODY_BYTES,
  MAX_DEVICE_ID,
  MAX_IDEMPOTENCY_KEY,
  MAX_JSON_DEPTH,
  aliases,
  commands,
  type Issue,
  type Subject,
  ErrorCode,
} from '../../subjects/index.js';
import type { z } from 'zod';
import type { Logger } from 'pino';
import { ServiceError, classifyError, fail, failureFields, reasonOf, type ReachabilityJudge } from '../errors.js';
import type { CommandContext } from './context.js';
import { IdempotencyStore, isKeyRace, requestHash, type Prior } from './idempotency.js';
import type { TokenBuckets } from './limits.js';
import { droppedFields, unstorable, unstorableStrings } from './hygiene.js';
import type { Metrics } from '../metrics/metrics.js';
import { startRequestTrace, type RequestTrace } from '../tracing/trace.js';

export type Handler = (req: any, ctx: CommandContext) => Promise<unknown>;
/** One handler per subject that has its own (aliases resolve to their target's). */
export type HandlerTable = Partial<Record<Subject, Handler>>;

export interface Inbound {
  subject: Subject;
  /** Raw body (NATS payload or HTTP body); empty means `{}`. */
  body: Uint8Array | string;
  deviceId?: string;
  requestId?: string;
  connectionId?: string;
  idempotencyKey?: string;
  /** The caller's W3C `traceparent` header, if any (validated here; a bad one starts a new trace). */
  traceparent?: string;
  trusted?: boolean;
}

export type Outcome = { ok: true; reply: unknown } | { ok: false; error: ServiceError };

const decoder = new TextDecoder('utf-8', { fatal: true });

export function issuesOf(error: z.ZodError): Issue[] {
  return error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
}

/** A problem with the body as a whole: `invalid_request` with one issue at the empty path. */
const badBody = (message: string) => fail.invalid(message, [{ path: '', message }]);

/**
 * A request body (NATS payload or HTTP body) -> its JSON object: at most 256 KiB of UTF-8 JSON,
 * an object, empty meaning `{}`. Refusals are `payload_too_large` / `invalid_request`.
 */
export function decodeBody(body: Uint8Array | string): Record<string, unknown> {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  if (size > MAX_BODY_BYTES) throw fail.payloadTooLarge();
  let text: string;
  try {
    text = typeof body === 'string' ? body : decoder.decode(body);
  } catch {
    throw badBody('request body is not UTF-8');
  }
  if (text.trim() === '') return {};
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw badBody('request body is not JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw badBody('request body must be a JSON object');
  }
  const deep = fieldNestedTooDeep(data, MAX_JSON_DEPTH);
  if (deep !== null) {
    const message = `nested more than ${MAX_JSON_DEPTH} levels deep`;
    throw fail.invalid(`request body is ${message}`, [{ path: deep, message }]);
  }
  return data as Record<string, unknown>;
}

/**
 * The top-level field of `body` whose value nests objects and arrays more than `limit` levels
 * deep (the body itself is level 1), or null. Iterative: a hostile body must not exhaust the
 * stack here, and everything after this (schemas, hygiene walks, PostgreSQL, the replies' and
 * broadcasts' JSON) may then recurse safely.
 */
export function fieldNestedTooDeep(body: object, limit: number): string | null {
  const stack: Array<{ value: unknown; depth: number; field: string }> = Object.entries(body).map(([field, value]) => ({ value, depth: 2, field }));
  while (stack.length > 0) {
    const { value, depth, field } = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth > limit) return field;
    for (const v of Array.isArray(value) ? value : Object.values(value)) stack.push({ value: v, depth: depth + 1, field });
  }
  return null;
}

function bodyText(body: Uint8Array | string): string {
  return typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
}

export class Dispatcher {
  constructor(
    private readonly deps: {
      handlers: HandlerTable;
      log: Logger;
      limits: TokenBuckets;
      idempotency: IdempotencyStore;
      metrics?: Metrics;
      /** The database health monitor: was a failure the database being unreachable? */
      health?: ReachabilityJudge;
    },
  ) {}

  /** Whether `subject` is served (every contract subject once all handlers are registered). */
  serves(subject: string): subject is Subject {
    return Object.hasOwn(commands, subject) && this.handlerOf(subject as Subject) !== undefined;
  }

  private handlerOf(subject: Subject): Handler | undefined {
    return this.deps.handlers[aliases[subject] ?? subject];
  }

  /** Never throws: every failure becomes an `Outcome` with a wire-safe error. */
  async dispatch(inb: Inbound): Promise<Outcome> {
    const started = performance.now();
    const trace = startRequestTrace(inb.traceparent);
    let log = this.deps.log.child({
      subject: inb.subject,
      request_id: inb.requestId,
      device_id: inb.deviceId,
      connection_id: inb.connectionId,
      trace_id: trace.traceId,
      span_id: trace.spanId,
    });
    let outcome: Outcome;
    let located: string | undefined;
    let named = false;
    try {
      const { ctx, req } = this.prepare(inb, log, trace, started);
      log = ctx.log;
      named = typeof (req as { lobby_id?: unknown }).lobby_id === 'string';
      ctx.located = (lobbyId) => (located = lobbyId);
      outcome = await this.run(inb.subject, req, ctx);
    } catch (err) {
      outcome = { ok: false, error: await classifyError(err, this.deps.health) };
    }
    const elapsed = performance.now() - started;
    const duration_ms = Math.round(elapsed * 100) / 100;
    const subject = aliases[inb.subject] ?? inb.subject;
    this.deps.metrics?.requests.inc({ subject, outcome: outcome.ok ? 'ok' : outcome.error.code });
    this.deps.metrics?.requestDuration.observe({ subject }, elapsed / 1000);
    // A command named by code or session learns its lobby on the way: its last line names it.
    if (located !== undefined && !named) log = log.child({ lobby_id: located });
    if (outcome.ok) {
      log.info({ duration_ms }, 'request served');
    } else {
      const e = outcome.error;
      if (e.code === ErrorCode.unavailable) {
        // Expected while a dependency is down (its monitor logs the outage): one line, no stack.
        log.warn({ duration_ms, code: e.code, reason: reasonOf(e.cause ?? e) }, `request refused: ${e.message}`);
      } else if (e.status >= 500) {
        log.error({ duration_ms, code: e.code, err: e.cause ?? e }, 'request failed');
      } else {
        log.info({ duration_ms, code: e.code, details: e.details }, `request refused: ${e.message}`);
      }
    }
    return outcome;
  }

  private prepare(inb: Inbound, log: Logger, trace: RequestTrace, receivedAt: number): { ctx: CommandContext; req: unknown } {
    const handler = this.handlerOf(inb.subject);
    if (!handler) throw new ServiceError(ErrorCode.internal, `no handler for ${inb.subject}`);
    const data = decodeBody(inb.body);
    if (inb.deviceId === undefined || inb.deviceId === '') {
      throw fail.invalid('the Device-Id header is required');
    }
    if (!DeviceId.safeParse(inb.deviceId).success) {
      throw fail.invalid(`Device-Id must be 1-${MAX_DEVICE_ID} printable ASCII characters`);
    }
    const key = inb.idempotencyKey;
    if (key !== undefined && (key.length < 1 || key.length > MAX_IDEMPOTENCY_KEY || unstorable(key) !== null)) {
      throw fail.invalid(`Idempotency-Key must be 1-${MAX_IDEMPOTENCY_KEY} characters, without NUL`);
    }
    // Trusted internal reads (the HTTP shim's own) are not a device's traffic.
    if (!inb.trusted) this.deps.limits.take(inb.deviceId);
    const parsed = commands[inb.subject].request.safeParse(data);
    if (!parsed.success) throw fail.invalid('request does not match the schema', issuesOf(parsed.error));
    const req = parsed.data as Record<string, unknown>;
    const unfit = unstorableStrings(req);
    if (unfit.length > 0) throw fail.invalid('request has a string that cannot be stored', unfit);
    // Unknown fields are ignored, as v1 did (the app sends its own device_id in step data).
    const dropped = droppedFields(data, req);
    if (dropped.length > 0) log.debug({ ignored_fields: dropped }, 'unknown request fields ignored');
    const ctx: CommandContext = {
      deviceId: inb.deviceId,
      requestId: inb.requestId,
      connectionId: inb.connectionId,
      trusted: inb.trusted,
      traceparent: trace.traceparent,
      subject: aliases[inb.subject] ?? inb.subject,
      receivedAt,
      log: log.child({ lobby_id: req.lobby_id, session_id: req.session_id }),
    };
    if (inb.idempotencyKey !== undefined) {
      ctx.idempotency = {
        deviceId: inb.deviceId,
        key: inb.idempotencyKey,
        subject: aliases[inb.subject] ?? inb.subject,
        requestHash: requestHash(aliases[inb.subject] ?? inb.subject, bodyText(inb.body)),
      };
    }
    return { ctx, req };
  }

  private async run(subject: Subject, req: unknown, ctx: CommandContext): Promise<Outcome> {
    const handler = this.handlerOf(subject)!;
    const key = ctx.idempotency;
    if (key) {
      const prior = await this.deps.idempotency.find(key);
      if (prior) return replayed(prior, ctx);
    }
    try {
      const reply = await handler(req, ctx);
      // A command that wrote nothing of a lobby (a read, presence) did not keep its reply.
      if (key && !key.kept) await this.deps.idempotency.storeSuccess(key, reply);
      return { ok: true, reply };
    } catch (err) {
      if (key && isKeyRace(err)) {
        const prior = await this.deps.idempotency.find(key);
        if (prior) return replayed(prior, ctx);
      }
      const error = await classifyError(err, this.deps.health);
      if (key) await this.deps.idempotency.storeRefusal(key, error).catch((e) => ctx.log.warn(failureFields(e), 'could not store refusal'));
      return { ok: false, error };
    }
  }
}

function replayed(prior: Prior, ctx: CommandContext): Outcome {
  ctx.log.debug('replaying the first outcome of this Idempotency-Key');
  return prior;
}
