// The stream and the join-failure bucket at start-up, on the single test server:
// NATS_STREAM_REPLICAS > 1 needs a cluster (the 3-node case is in test/faults/cluster.test.ts).
import { Writable } from 'node:stream';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { joinFailuresBucket } from '../../src/transport/join-failures.js';
import { createTestEnv, deleteStream, GatewayClient } from '../helpers/service.js';

let env: Awaited<ReturnType<typeof createTestEnv>>;
let client: GatewayClient;
beforeAll(async () => {
  env = await createTestEnv({ NATS_STREAM_REPLICAS: '3' });
  client = await GatewayClient.connect(env);
});
afterAll(async () => {
  await client?.close();
  await deleteStream(env).catch(() => undefined);
  await env?.db.drop();
});

/** Starts and stops the service once; returns its log lines. */
async function startOnce(): Promise<Array<{ level: string; msg: string; stream?: string }>> {
  const lines: Array<{ level: string; msg: string; stream?: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  const app = await startApp(loadConfig(env.env), createLogger('info', sink));
  await app.stop();
  return lines;
}

describe('stream configuration', () => {
  it('stream - NATS_STREAM_REPLICAS=3 on a single server: one replica and a warning saying why', async () => {
    const lines = await startOnce();
    const jsm = await jetstreamManager(client.nc);
    for (const name of [env.stream, `KV_${joinFailuresBucket(env.stream)}`]) {
      expect((await jsm.streams.info(name)).config.num_replicas, name).toBe(1);
      const warning = lines.find((l) => l.level === 'warn' && l.stream === name);
      expect(warning?.msg, name).toMatch(/NATS_STREAM_REPLICAS > 1 needs a NATS cluster/);
    }
  });

  it('stream - a restart with the same settings leaves the stream and the bucket as they are', async () => {
    const jsm = await jetstreamManager(client.nc);
    const before = (await jsm.streams.info(env.stream)).created;
    const lines = await startOnce();
    expect(lines.filter((l) => /JetStream stream (created|updated)/.test(l.msg))).toEqual([]);
    expect((await jsm.streams.info(env.stream)).created).toBe(before);
  });

  it('stream - a changed EVENTS_MAX_AGE updates the existing stream in place', async () => {
    const jsm = await jetstreamManager(client.nc);
    const app = await startApp(loadConfig({ ...env.env, EVENTS_MAX_AGE: '1h' }), createLogger('silent'));
    await app.stop();
    expect((await jsm.streams.info(env.stream)).config.max_age).toBe(3_600_000_000_000);
  });
});
