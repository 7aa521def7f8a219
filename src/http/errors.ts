/**
 * HTTP error replies (CONTRACT section 6): the status of the error table and the body
 * `{"detail": <message>, "error": {code, message, details}}`. Fastify's own refusals (body too
 * large, unreadable body, bad URL) are mapped onto the same codes, and anything unexpected is
 * an `internal` whose cause goes to the log only.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ErrorCode, type HttpErrorBody } from '../../subjects/index.js';
import { ServiceError, fail, normalizeError, reasonOf, toWire } from '../errors.js';

export function errorBody(err: ServiceError): HttpErrorBody {
  return { detail: err.message, ...toWire(err).body };
}

/**
 * Sends `err`. `status` overrides the table's status only for routing errors (404 unknown
 * route, 405 wrong method), which have no code of their own.
 */
export function sendError(reply: FastifyReply, err: ServiceError, status = err.status): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send(errorBody(err));
}

/** Anything thrown while serving a request -> a wire error. */
export function toServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown } | null;
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return fail.payloadTooLarge();
  // Fastify's own client errors (bad Content-Length, bad URL encoding, bad media type): their
  // messages are fixed texts, safe to show.
  if (typeof e?.code === 'string' && e.code.startsWith('FST_') && typeof e.statusCode === 'number' && e.statusCode < 500) {
    return fail.invalid(String(e.message));
  }
  return normalizeError(err);
}

/** The error handler of the whole server: map, log, answer. Never rethrows. */
export function handleError(log: Logger) {
  return (err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const error = toServiceError(err);
    logRefusal(log, req, error);
    return sendError(reply, error);
  };
}

/**
 * Logs a refusal made by the shim itself (requests that reach the dispatcher are logged there).
 * Only the path is logged: a query string is the caller's data.
 */
export function logRefusal(log: Logger, req: FastifyRequest, err: ServiceError, status = err.status): void {
  const fields = { method: req.method, path: req.url.split('?')[0], status, code: err.code };
  // `unavailable` is expected while a dependency is down: one line without a stack.
  if (err.code === ErrorCode.unavailable) log.warn({ ...fields, reason: reasonOf(err.cause ?? err) }, `http request refused: ${err.message}`);
  else if (status >= 500) log.error({ ...fields, err: err.cause ?? err }, 'http request failed');
  else log.info(fields, `http request refused: ${err.message}`);
}
