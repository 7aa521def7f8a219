/**
 * The HTTP shim (CONTRACT section 6): `GET /health`, the v1 REST endpoints (`v1.ts`),
 * `POST /gateway/handle` (`gateway.ts`), `GET /openapi.json`, `GET /asyncapi.json` (the NATS
 * interface), `GET /metrics` (Prometheus) and the session timeline (`timeline.ts`), all with the
 * same auth as the rest. Every command endpoint
 * dispatches into the same `Dispatcher` as NATS; this file only wires Fastify: body reading,
 * the internal token, and error replies in the contract's shape for everything, including
 * unknown routes (404), wrong methods (405) and Fastify's own refusals.
 */
import Fastify, { type FastifyInstance, type HTTPMethods } from 'fastify';
import type { Logger } from 'pino';
import { MAX_BODY_BYTES, SERVICE, type HealthReply, ErrorCode } from '../../subjects/index.js';
import type { Config } from '../config.js';
import { ServiceError } from '../errors.js';
import type { Dispatcher } from '../transport/dispatch.js';
import { registerAuth } from './auth.js';
import { handleError, logRefusal, sendError, toServiceError } from './errors.js';
import { registerGatewayRoute } from './gateway.js';
import { decodeBody } from '../transport/dispatch.js';
import { echoRequestId, requestIdOf } from './inbound.js';
import { asyncApiDocument } from '../docs/asyncapi.js';
import { openApiDocument } from './openapi.js';
import { registerV1Routes } from './v1.js';
import { registerTimelineRoutes } from './timeline.js';
import type { TimelineStore } from '../timeline/store.js';

export interface HealthChecks {
  database: boolean;
  nats: boolean;
}

export interface HttpDeps {
  config: Config;
  log: Logger;
  dispatcher: Dispatcher;
  health: () => Promise<HealthChecks>;
  /** Reads behind `GET /sessions/{id}/timeline(.svg)`. */
  timelines: Pick<TimelineStore, 'timeline'>;
  /** The Prometheus exposition (`GET /metrics`). */
  metrics?: () => Promise<{ contentType: string; body: string }>;
}

/** Methods answered with 405 on a known path that does not serve them. */
const METHODS: HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

export async function createHttpServer(deps: HttpDeps): Promise<FastifyInstance> {
  const { config, dispatcher } = deps;
  const log = deps.log.child({ component: 'http' });
  const app = Fastify({
    // Requests are logged by the dispatcher (one line each, with request and device ids);
    // refusals made here are logged by `logRefusal`.
    logger: false,
    requestIdHeader: false,
    // Fastify refuses larger bodies itself (mapped to `payload_too_large`, same as NATS).
    bodyLimit: MAX_BODY_BYTES,
    // Answered by the hook below, in the contract's error shape.
    return503OnClosing: false,
    // Long path parameters reach the command schema (400 with issues), not a routing 404.
    routerOptions: { maxParamLength: 1024 },
    // A malformed URL (bad percent-encoding) and the like.
    frameworkErrors: (err, req, reply) => {
      const error = toServiceError(err);
      logRefusal(log, req, error);
      void sendError(reply, error);
    },
  });
  app.setErrorHandler(handleError(log));

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (req, reply) => {
    // Echoed on every answer, refusals included (/gateway/handle may replace it from its body).
    echoRequestId(reply, requestIdOf(req));
    if (closing) return sendError(reply, new ServiceError(ErrorCode.unavailable, 'the service is shutting down'));
  });
  // An answer sent while closing ends its keep-alive connection: close() waits for every
  // connection, and one left idle would hold the shutdown until its keep-alive timeout.
  app.addHook('onSend', async (_req, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  registerAuth(app, config.http.authToken, log);

  // Every body is read as JSON, whatever its Content-Type, decoded exactly as a NATS payload is.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_BODY_BYTES }, (_req, body, done) => {
    try {
      done(null, decodeBody(body as Buffer));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  const served = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    const methods = served.get(route.url) ?? new Set<string>();
    for (const m of [route.method].flat()) methods.add(m);
    served.set(route.url, methods);
  });

  app.get('/health', async (_req, reply) => {
    const checks = await deps.health();
    const ok = checks.database && checks.nats;
    const body: HealthReply = { service: SERVICE.name, ok, checks };
    return reply.code(ok ? 200 : 503).send(body);
  });
  const openapi = openApiDocument();
  app.get('/openapi.json', async () => openapi);
  // Serialised once: the document is large and never changes while the process runs.
  const asyncapi = JSON.stringify(asyncApiDocument());
  app.get('/asyncapi.json', async (_req, reply) => reply.type('application/json; charset=utf-8').send(asyncapi));
  const { metrics } = deps;
  if (metrics) {
    app.get('/metrics', async (_req, reply) => {
      const { contentType, body } = await metrics();
      return reply.type(contentType).send(body);
    });
  }
  registerV1Routes(app, dispatcher);
  registerGatewayRoute(app, dispatcher);
  registerTimelineRoutes(app, deps.timelines);

  // 405 for the other methods of every known path (a HEAD route comes with each GET).
  for (const [url, methods] of [...served]) {
    if (methods.has('GET')) methods.add('HEAD');
    const allowed = METHODS.filter((m) => methods.has(m));
    const others = METHODS.filter((m) => !methods.has(m));
    app.route({
      method: others,
      url,
      handler: async (req, reply) => {
        const err = new ServiceError(ErrorCode.invalid_request, 'Method Not Allowed', {
          method: req.method,
          allowed,
        });
        logRefusal(log, req, err, 405);
        reply.header('Allow', allowed.join(', '));
        return sendError(reply, err, 405);
      },
    });
  }

  app.setNotFoundHandler(async (req, reply) => {
    const err = new ServiceError(ErrorCode.invalid_request, 'Not Found', { method: req.method, path: req.url.split('?')[0] });
    logRefusal(log, req, err, 404);
    return sendError(reply, err, 404);
  });

  return app;
}
