/**
 * The HTTP shim (CONTRACT section 6). For now: `GET /health`. The v1 REST endpoints and
 * `POST /gateway/handle` dispatch into the same `Dispatcher` as NATS.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { SERVICE } from '../../subjects/index.js';
import type { Config } from '../config.js';
import type { Dispatcher } from '../transport/dispatch.js';

export interface HealthChecks {
  database: boolean;
  nats: boolean;
}

export interface HttpDeps {
  config: Config;
  log: Logger;
  dispatcher: Dispatcher;
  health: () => Promise<HealthChecks>;
}

export async function createHttpServer(deps: HttpDeps): Promise<FastifyInstance> {
  // Requests are logged by the dispatcher (one line each, with request and device ids).
  const app = Fastify({ logger: false });

  app.get('/health', async (_req, reply) => {
    const checks = await deps.health();
    const ok = checks.database && checks.nats;
    return reply.code(ok ? 200 : 503).send({ service: SERVICE.name, ok, checks });
  });

  return app;
}
