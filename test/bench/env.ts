/**
 * Where a benchmark run lives: a fresh PostgreSQL database `lobby_bench_<random>` on the local
 * server, and its own NATS subject prefix and JetStream stream, so two runs (or a run and the
 * test suite) never collide. `close()` drops the database and deletes the stream.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';

export const DEFAULT_PG_SERVER = 'postgresql://postgres@127.0.0.1:5432/postgres';
export const DEFAULT_NATS = 'nats://127.0.0.1:4222';

export interface BenchEnv {
  /** Random token shared by the database, prefix and stream names of this run. */
  id: string;
  /** postgresql:// URL of the run's own database. */
  databaseUrl: string;
  databaseName: string;
  natsUrl: string;
  /** Subject prefix without the trailing dot, as `NATS_SUBJECT_PREFIX` takes it. */
  prefix: string;
  stream: string;
  /** The bench's own NATS connection (requests, broadcast subscription, echo floor). */
  nc: NatsConnection;
  close(): Promise<void>;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** `serverUrl` with its database path replaced by `name`. */
function databaseUrlOf(serverUrl: string, name: string): string {
  const url = new URL(serverUrl.replace(/^postgres(ql)?:/, 'postgresql:'));
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * `pgServerUrl` names a PostgreSQL *server* (any database on it the user may connect to, like
 * the tests' DATABASE_URL); the run creates its own database there and never touches others.
 */
export async function createBenchEnv(pgServerUrl: string, natsUrl: string): Promise<BenchEnv> {
  const id = randomBytes(5).toString('hex');
  const databaseName = `lobby_bench_${id}`;
  await withClient(pgServerUrl, async (c) => {
    // 55006 "template1 is being accessed by other users" (a test run creating databases): retry.
    for (let attempt = 1; ; attempt++) {
      try {
        await c.query(`CREATE DATABASE "${databaseName}"`);
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== '55006' || attempt >= 20) throw err;
        await sleep(50 * attempt);
      }
    }
  });
  const stream = `BENCH_${id.toUpperCase()}`;
  let nc: NatsConnection;
  try {
    nc = await connect({ servers: natsUrl.split(','), maxReconnectAttempts: -1, noAsyncTraces: true, name: `bench-${id}` });
  } catch (err) {
    await dropDatabase(pgServerUrl, databaseName);
    throw err;
  }
  return {
    id,
    databaseUrl: databaseUrlOf(pgServerUrl, databaseName),
    databaseName,
    natsUrl,
    prefix: `bench_${id}`,
    stream,
    nc,
    async close() {
      const jsm = await jetstreamManager(nc).catch(() => undefined);
      await jsm?.streams.delete(stream).catch(() => undefined);
      await nc.close().catch(() => undefined);
      await dropDatabase(pgServerUrl, databaseName);
    },
  };
}

async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await withClient(serverUrl, async (c) => {
    // FORCE ends the connections a killed service child may have left behind.
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  });
}
