/**
 * The inbound token (`HTTP_AUTH_TOKEN`, CONTRACT section 6): when set, every path but
 * `/health` needs `X-Internal-Token: <token>` or `Authorization: Bearer <token>`, else
 * `401 unauthorized`. Unknown paths are refused with 401 too, so the shim reveals nothing to a
 * caller without the token.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { HttpHeader, ErrorCode } from '../../subjects/index.js';
import { ServiceError } from '../errors.js';
import { logRefusal, sendError } from './errors.js';

/** Paths anyone may call, token or not. */
export const PUBLIC_PATHS = new Set(['/health']);

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Whether `presented` is the token. Both sides are hashed first, so the comparison is over
 * equal lengths and takes the same time whatever the length or content of the guess.
 */
export function tokenChecker(token: string): (presented: string | undefined) => boolean {
  const expected = digest(token);
  return (presented) => presented !== undefined && timingSafeEqual(expected, digest(presented));
}

/** The tokens a request presents: `X-Internal-Token` and the `Authorization: Bearer` one. */
function presentedTokens(req: FastifyRequest): Array<string | undefined> {
  const internal = req.headers[HttpHeader.internalToken.toLowerCase()];
  const auth = req.headers.authorization;
  const bearer = auth === undefined ? undefined : /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim();
  return [Array.isArray(internal) ? internal[0] : internal, bearer];
}

export function registerAuth(app: FastifyInstance, token: string | undefined, log: Logger): void {
  if (token === undefined) return;
  const matches = tokenChecker(token);
  app.addHook('onRequest', async (req, reply) => {
    if (req.routeOptions.url !== undefined && PUBLIC_PATHS.has(req.routeOptions.url)) return;
    // Check both forms every time (no early exit that would tell which one was tried).
    const results = presentedTokens(req).map(matches);
    if (results.includes(true)) return;
    const err = new ServiceError(ErrorCode.unauthorized, 'missing or wrong internal token');
    logRefusal(log, req, err);
    reply.header('WWW-Authenticate', 'Bearer');
    return sendError(reply, err);
  });
}
