// vitest globalSetup: decides ONCE per run where NATS and PostgreSQL come from and hands
// the URLs to test workers via provide/inject (read them with natsUrl()/pgAdminUrl()).
//
// Preference, decided independently for NATS and for PostgreSQL:
//   1. NATS_URL / DATABASE_URL from the environment (DATABASE_URL is a *server* URL:
//      tests create fresh databases on it, never use the database named in it);
//   2. a private nats-server (JetStream) / the local PostgreSQL at 127.0.0.1:5432;
//   3. testcontainers (nats:2.10 -js, postgres:15), only if a Docker engine answers.
import { connect } from '@nats-io/transport-node';
import type { TestProject } from 'vitest/node';
import { startPrivateNats, withPgClient } from './infra.js';

declare module 'vitest' {
  export interface ProvidedContext {
    natsUrl: string;
    pgAdminUrl: string;
  }
}

const LOCAL_PG = 'postgresql://postgres@127.0.0.1:5432/postgres';

type Cleanup = () => Promise<void>;
interface Resolved {
  url: string;
  source: string;
  cleanup?: Cleanup;
}

function errMsg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** URL for logs: password replaced by ***. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

// Memoized: NATS and PostgreSQL resolution run in parallel and may both ask.
let dockerCheck: Promise<void> | undefined;
function dockerAvailable(): Promise<void> {
  // testcontainers fails in ~1 ms when no socket/DOCKER_HOST exists; the timeout guards
  // against an engine that exists but does not answer.
  dockerCheck ??= import('testcontainers').then(({ getContainerRuntimeClient }) =>
    withTimeout(getContainerRuntimeClient().then(() => undefined), 15_000, 'Docker engine check'),
  );
  return dockerCheck;
}

async function resolveNats(): Promise<Resolved> {
  const envUrl = process.env.NATS_URL;
  if (envUrl) {
    // Explicit configuration: fail loudly instead of silently using something else.
    try {
      const nc = await connect({ servers: envUrl.split(','), timeout: 5_000 });
      await nc.close();
    } catch (err) {
      throw new Error(`NATS_URL=${redact(envUrl)} is set but not reachable: ${errMsg(err)}`);
    }
    return { url: envUrl, source: `NATS_URL (${redact(envUrl)})` };
  }

  const tried: string[] = [];
  try {
    const nats = await startPrivateNats({ jetstream: true });
    return { url: nats.url, source: `private nats-server (${nats.url})`, cleanup: nats.stop };
  } catch (err) {
    tried.push(`private nats-server: ${errMsg(err)}`);
  }

  try {
    await dockerAvailable();
    const { GenericContainer, Wait } = await import('testcontainers');
    const c = await new GenericContainer('nats:2.10')
      .withCommand(['-js'])
      .withExposedPorts(4222)
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .start();
    const url = `nats://${c.getHost()}:${c.getMappedPort(4222)}`;
    return { url, source: `testcontainers nats:2.10 (${url})`, cleanup: async () => void (await c.stop()) };
  } catch (err) {
    tried.push(`testcontainers nats:2.10: ${errMsg(err)}`);
  }
  throw new Error(`No NATS available. Tried:\n  - NATS_URL: not set\n  - ${tried.join('\n  - ')}`);
}

async function resolvePostgres(): Promise<Resolved> {
  const envUrl = process.env.DATABASE_URL;
  if (envUrl) {
    try {
      await withPgClient(envUrl, (c) => c.query('SELECT 1'));
    } catch (err) {
      throw new Error(`DATABASE_URL=${redact(envUrl)} is set but not reachable: ${errMsg(err)}`);
    }
    return { url: envUrl, source: `DATABASE_URL server (${redact(envUrl)})` };
  }

  const tried: string[] = [];
  try {
    await withPgClient(LOCAL_PG, (c) => c.query('SELECT 1'));
    return { url: LOCAL_PG, source: `local PostgreSQL (${LOCAL_PG})` };
  } catch (err) {
    tried.push(`local PostgreSQL ${LOCAL_PG}: ${errMsg(err)}`);
  }

  try {
    await dockerAvailable();
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const c = await new PostgreSqlContainer('postgres:15').start();
    const url = c.getConnectionUri();
    return { url, source: `testcontainers postgres:15 (${redact(url)})`, cleanup: async () => void (await c.stop()) };
  } catch (err) {
    tried.push(`testcontainers postgres:15: ${errMsg(err)}`);
  }
  throw new Error(`No PostgreSQL available. Tried:\n  - DATABASE_URL: not set\n  - ${tried.join('\n  - ')}`);
}

export default async function setup(project: TestProject) {
  // Resolve both in parallel; on any failure stop whatever did start, then report all errors.
  const results = await Promise.allSettled([resolveNats(), resolvePostgres()]);
  const cleanups = results.flatMap((r) => (r.status === 'fulfilled' && r.value.cleanup ? [r.value.cleanup] : []));
  const teardown = async () => {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err) => console.error('[test infra] teardown failed:', err));
    }
  };
  const [nats, postgres] = results;
  if (nats.status === 'rejected' || postgres.status === 'rejected') {
    await teardown();
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [errMsg(r.reason)] : []));
    throw new Error(`[test infra] ${errors.join('\n')}`);
  }

  project.provide('natsUrl', nats.value.url);
  project.provide('pgAdminUrl', postgres.value.url);
  console.log(`[test infra] NATS: ${nats.value.source}; PostgreSQL: ${postgres.value.source}`);
  return teardown;
}
