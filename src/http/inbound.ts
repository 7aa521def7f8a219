/**
 * Reading an HTTP request into what the dispatcher takes: the JSON body (any content type),
 * a v1 envelope validated by its zod schema, and the correlation and idempotency headers.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { Header, HttpHeader } from '../../subjects/index.js';
import { fail } from '../errors.js';
import { issuesOf } from '../transport/dispatch.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

/** A problem with the body as a whole: one issue at the empty path (as the dispatcher says it). */
const badBody = (message: string) => fail.invalid(message, [{ path: '', message }]);

/**
 * The body of every request, whatever its `Content-Type` (v1 clients are not all careful
 * about it): UTF-8 JSON object, empty meaning `{}`. Same refusals, same words as the
 * dispatcher's decoding of a NATS payload (which is not exported; keep the two in step).
 */
export function readJsonBody(raw: Buffer): Record<string, unknown> {
  let text: string;
  try {
    text = decoder.decode(raw);
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
  return data as Record<string, unknown>;
}

/** Validates a v1 envelope (body or query); a violation is `invalid_request` with its issues. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value ?? {});
  if (!parsed.success) throw fail.invalid('request does not match the schema', issuesOf(parsed.error));
  return parsed.data;
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** `X-Request-Id` (HTTP habit) or `Request-Id` (the NATS header's name). */
export function requestIdOf(req: FastifyRequest): string | undefined {
  return header(req, HttpHeader.requestId) ?? header(req, Header.requestId);
}

export function idempotencyKeyOf(req: FastifyRequest): string | undefined {
  return header(req, Header.idempotencyKey);
}

/** Echoes the correlation id under both names, on success and error replies alike. */
export function echoRequestId(reply: FastifyReply, requestId: string | undefined): void {
  if (requestId === undefined) return;
  reply.header(HttpHeader.requestId, requestId);
  reply.header(Header.requestId, requestId);
}
