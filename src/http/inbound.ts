/**
 * Reading an HTTP request into what the dispatcher takes: a v1 envelope validated by its zod
 * schema, and the correlation and idempotency headers.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { Header, HttpHeader } from '../../subjects/index.js';
import { fail } from '../errors.js';
import { issuesOf } from '../transport/dispatch.js';

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

/** The caller's W3C `traceparent` (HTTP header names are case-insensitive). */
export function traceparentOf(req: FastifyRequest): string | undefined {
  return header(req, Header.traceparent);
}

/** Echoes the correlation id under both names, on success and error replies alike. */
export function echoRequestId(reply: FastifyReply, requestId: string | undefined): void {
  if (requestId === undefined) return;
  reply.header(HttpHeader.requestId, requestId);
  reply.header(Header.requestId, requestId);
}
