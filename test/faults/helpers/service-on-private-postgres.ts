/**
 * The fixture of the PostgreSQL fault tests: a private PostgreSQL (the system one on 5432 is
 * never stopped), the service as a child process on it, and a Gateway-like client over NATS.
 * Registers its own beforeAll/afterAll; the returned object is filled in before the tests run.
 */
import { afterAll, beforeAll } from 'vitest';
import { spawnService } from '../../helpers/process.js';
import { GatewayClient, createTestEnv, deleteStream } from '../../helpers/service.js';
import { startPrivatePostgres, type PrivatePostgres } from './postgres.js';

export interface ServiceOnPrivatePostgres {
  pg: PrivatePostgres;
  svc: Awaited<ReturnType<typeof spawnService>>;
  client: GatewayClient;
}

/** `skip`: why the private PostgreSQL cannot run here (then nothing starts), or null. */
export function serviceOnPrivatePostgres(skip: string | null): ServiceOnPrivatePostgres {
  const f = {} as ServiceOnPrivatePostgres;
  let env: Awaited<ReturnType<typeof createTestEnv>> | undefined;
  beforeAll(async () => {
    if (skip) return;
    f.pg = await startPrivatePostgres();
    env = await createTestEnv({ DATABASE_URL: f.pg.url });
    f.svc = await spawnService(env.env);
    f.client = await GatewayClient.connect(env);
  });
  afterAll(async () => {
    await f.client?.close().catch(() => undefined);
    f.svc?.kill('SIGKILL');
    await f.svc?.exited;
    if (env) await deleteStream(env).catch(() => undefined);
    await env?.db.drop();
    await f.pg?.stop();
  });
  return f;
}
