/**
 * `GET /metrics` after real measurement sessions (src/sim phones over NATS, the v1 sink on):
 * every family is there with values that follow from what ran; the endpoint keeps the HTTP
 * token rule. (`$SRV.STATS.lobby` is tested in lobby.transport.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { HttpHeader } from '../../subjects/index.js';
import type { App } from '../../src/app.js';
import { METRIC_NAMES } from '../../src/metrics/metrics.js';
import { Measurement } from '../../src/sim/measurement.js';
import { NatsPhoneTransport } from '../../src/sim/nats-transport.js';
import { natsUrl, waitFor } from '../helpers/infra.js';
import { RecordingSink, parseExposition, samplesOf, valueOf, type Sample } from '../helpers/observe.js';
import { GatewayClient, createTestEnv, deleteStream, device, startService, type TestEnv } from '../helpers/service.js';
import { createSession, setupLobby } from '../helpers/measurement.js';

const TOKEN = 'metrics-test-token';
const M = METRIC_NAMES;

let env: Awaited<ReturnType<typeof createTestEnv>>;
let app: App;
let nc: NatsConnection;
let transport: NatsPhoneTransport;
let client: GatewayClient;
let sink: RecordingSink;

beforeAll(async () => {
  sink = await RecordingSink.start();
  env = await createTestEnv({
    NEXT_SPEAKER_DELAY_MS: '50',
    HTTP_AUTH_TOKEN: TOKEN,
    GATEWAY_URL: sink.url,
    // Low enough for this file to reach both limits on purpose, high enough for the phones.
    RATE_LIMIT_PER_SECOND: '100',
    RATE_LIMIT_BURST: '100',
    JOIN_CODE_FAILURES_PER_MINUTE: '2',
  });
  app = await startService(env.env);
  nc = await connect({ servers: natsUrl(), maxReconnectAttempts: -1, noAsyncTraces: true });
  transport = new NatsPhoneTransport(nc, { prefix: env.prefix });
  client = await GatewayClient.connect(env);
  await nc.flush();
});

afterAll(async () => {
  await transport?.close();
  await client?.close();
  await nc?.close();
  await app?.stop();
  await sink?.close();
  await deleteStream(env as TestEnv).catch(() => undefined);
  await env?.db.drop();
});

/** `token` null: no token at all. */
async function scrape(token: string | null = TOKEN): Promise<Response> {
  return fetch(`${app.httpUrl}/metrics`, { headers: token === null ? {} : { [HttpHeader.internalToken]: token } });
}

async function samples(): Promise<{ samples: Sample[]; types: Map<string, string> }> {
  const res = await scrape();
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

describe('metrics - GET /metrics after measurement sessions', () => {
  it('metrics - every family is exported with values that follow from the sessions run', async () => {
    // A 1 x 2 session and a 2-speaker one (its second speaker starts by the next_speaker deadline).
    const runs = await Promise.all([
      new Measurement(transport, { speakers: 1, microphones: 2, timeoutMs: 10_000 }).run(),
      new Measurement(transport, { speakers: 2, microphones: 2, timeoutMs: 10_000 }).run(),
    ]);
    for (const r of runs) expect(r.outcome, r.reason).toBe('completed');
    // One session left waiting in `idle` (nobody starts it).
    const L = await setupLobby(client, { speakers: 1, microphones: 1 });
    await createSession(client, L);

    // Both limits refuse once at least: wrong join codes, then one device beyond its bucket.
    const guesser = device('guess');
    for (let i = 0; i < 3; i++) await client.send('lobby.join', guesser, { code: 'ZZZZZZ' });
    const noisy = device('noisy');
    const burst = await Promise.all(Array.from({ length: 130 }, () => client.send('lobby.get', noisy, { lobby_id: L.lobbyId })));
    expect(burst.some((r) => r.error?.code === 'rate_limited')).toBe(true);
    // A failing statement is a database error, by SQLSTATE (22012: division by zero).
    await expect(app.db.sql.query('select 1 / 0')).rejects.toThrow();

    // Everything delivered to both destinations before the backlog is read.
    await waitFor(async () => (await app.relay.pending()) === 0 && (await app.sink!.pending()) === 0, {
      message: 'outbox delivered',
    });
    const { samples: s, types } = await samples();

    // Requests by subject and outcome, and their latency per subject.
    expect(types.get(M.requests)).toBe('counter');
    expect(valueOf(s, M.requests, { subject: 'measurement.ready', outcome: 'ok' })).toBeGreaterThanOrEqual(3);
    expect(valueOf(s, M.requests, { subject: 'lobby.join', outcome: 'lobby_not_found' })).toBeGreaterThanOrEqual(2);
    expect(valueOf(s, M.requests, { subject: 'lobby.join', outcome: 'rate_limited' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(s, M.requests, { subject: 'lobby.get', outcome: 'rate_limited' })).toBeGreaterThanOrEqual(1);
    expect(types.get(M.requestDuration)).toBe('histogram');
    const readyCount = valueOf(s, `${M.requestDuration}_count`, { subject: 'measurement.ready' })!;
    expect(readyCount).toBe(valueOf(s, M.requests, { subject: 'measurement.ready', outcome: 'ok' }));
    const readySum = valueOf(s, `${M.requestDuration}_sum`, { subject: 'measurement.ready' })!;
    expect(readySum / readyCount).toBeGreaterThan(0);
    expect(readySum / readyCount).toBeLessThan(5);

    // Request -> first broadcast acked by JetStream: each step that moved the cycle on.
    const stepToBroadcast = valueOf(s, `${M.broadcastLatency}_count`, { subject: 'measurement.recording_started' })!;
    expect(stepToBroadcast).toBeGreaterThanOrEqual(3);
    const latency = valueOf(s, `${M.broadcastLatency}_sum`, { subject: 'measurement.recording_started' })! / stepToBroadcast;
    expect(latency).toBeGreaterThan(0);
    expect(latency).toBeLessThan(5);
    // A request that broadcast nothing has no observation.
    expect(samplesOf(s, `${M.broadcastLatency}_count`, { subject: 'lobby.get' })).toEqual([]);

    // Unfinished sessions by phase (database-wide): the one left idle, no other phase.
    expect(types.get(M.sessions)).toBe('gauge');
    expect(valueOf(s, M.sessions, { phase: 'idle' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(s, M.sessions, { phase: 'playing' })).toBe(0);
    // Deadlines fired: the automatic next speaker of the 2-speaker session.
    expect(valueOf(s, M.deadlinesFired, { kind: 'next_speaker' })).toBe(1);
    expect(valueOf(s, M.deadlinesFired, { kind: 'timeout' })).toBe(0);

    // Outbox: nothing left, and a lag observation per delivered event and destination.
    expect(valueOf(s, M.outboxBacklog, { destination: 'jetstream' })).toBe(0);
    expect(valueOf(s, M.outboxBacklog, { destination: 'gateway-sink' })).toBe(0);
    const published = valueOf(s, `${M.publishLag}_count`, { destination: 'jetstream' })!;
    expect(published).toBe(app.relay.delivered);
    expect(published).toBeGreaterThan(30);
    expect(valueOf(s, `${M.publishLag}_count`, { destination: 'gateway-sink' })).toBe(sink.received.length);
    expect(valueOf(s, `${M.publishLag}_sum`, { destination: 'jetstream' })! / published).toBeLessThan(5);

    // Limits, NATS, database.
    expect(valueOf(s, M.rateLimited, { kind: 'join_codes' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(s, M.rateLimited, { kind: 'token_bucket' })).toBe(burst.filter((r) => r.error?.code === 'rate_limited').length);
    expect(valueOf(s, M.natsReconnects)).toBe(0);
    expect(valueOf(s, M.dbPool, { state: 'max' })).toBe(20);
    const used = valueOf(s, M.dbPool, { state: 'used' })!;
    const free = valueOf(s, M.dbPool, { state: 'free' })!;
    expect(used).toBeGreaterThanOrEqual(0);
    expect(used + free).toBeGreaterThan(0);
    expect(used + free).toBeLessThanOrEqual(20);
    expect(valueOf(s, M.dbPool, { state: 'pending' })).toBe(0);
    expect(valueOf(s, M.dbErrors, { code: '22012' })).toBe(1);

    // prom-client's process metrics, prefixed.
    expect(valueOf(s, 'lobby_process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(samplesOf(s, 'lobby_nodejs_eventloop_lag_seconds')).toHaveLength(1);
  });

  it('metrics - /metrics needs the HTTP token like /openapi.json', async () => {
    expect((await scrape(null)).status).toBe(401);
    expect((await scrape('wrong')).status).toBe(401);
    expect((await scrape()).status).toBe(200);
  });
});
