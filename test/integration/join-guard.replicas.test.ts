// Wrong join codes are counted in a store every replica shares (a NATS KV bucket): two replicas
// of one deployment (same database, NATS and prefix), a guesser alternating between them.
import { Writable } from 'node:stream';
import type { Subscription } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { joinFailuresBucket } from '../../src/transport/join-failures.js';
import { waitFor } from '../helpers/infra.js';
import { createTestEnv, deleteStream, device, GatewayClient } from '../helpers/service.js';

let env: Awaited<ReturnType<typeof createTestEnv>>;
let a: App;
let b: App;
let client: GatewayClient;
const logs: Array<{ msg: string; component?: string }> = [];

/** A replica whose log lines (warn and up) are kept in `logs`. */
function replica(): Promise<App> {
  const config = loadConfig(env.env);
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  return startApp(config, createLogger('warn', sink));
}

beforeAll(async () => {
  env = await createTestEnv({ JOIN_CODE_FAILURES_PER_MINUTE: '10' });
  a = await replica();
  b = await replica();
  client = await GatewayClient.connect(env);
});
afterAll(async () => {
  await client?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  await deleteStream(env).catch(() => undefined);
  await env?.db.drop();
});

/** `POST /lobbies/join` on one replica's HTTP shim: the way to pick the replica. */
async function join(app: App, code: string, deviceId: string) {
  const res = await fetch(`${app.httpUrl}/lobbies/join`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code, device_id: deviceId }),
  });
  const body = (await res.json()) as { error?: { code: string; details?: { retry_after_ms?: number } } };
  return { status: res.status, code: body.error?.code, retryAfterMs: body.error?.details?.retry_after_ms };
}

/** Counts the join guard's look-ups in the bucket (STREAM.INFO requests on its stream). */
function countLookups(): { count: () => number; sub: Subscription } {
  let n = 0;
  const sub = client.nc.subscribe(`$JS.API.STREAM.INFO.KV_${joinFailuresBucket(env.stream)}`, { callback: () => void n++ });
  return { count: () => n, sub };
}

describe('join guard across replicas', () => {
  it('limits - a guesser alternating between two replicas is rate_limited at the 11th wrong code, not the 21st', async () => {
    const lobby = await client.call('lobby.create', device('admin'), {});
    const guesser = device('guesser');
    const replicas = [a, b];
    for (let i = 0; i < 10; i++) {
      const r = await join(replicas[i % 2]!, `ZZZZZ${(i % 8) + 2}`, guesser);
      expect(r, `wrong code ${i + 1}`).toMatchObject({ status: 404, code: 'lobby_not_found' });
    }
    // The 11th attempt on either replica, even with the right code.
    for (const app of replicas) {
      const r = await join(app, lobby.code, guesser);
      expect(r).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(r.retryAfterMs).toBeGreaterThan(45_000);
      expect(r.retryAfterMs).toBeLessThanOrEqual(60_000);
    }
    // Another device is not held back, on either replica.
    expect((await join(a, lobby.code, device('friend'))).status).toBe(200);
    expect((await join(b, lobby.code, device('friend'))).status).toBe(200);
  });

  it('limits - a replica that never saw the device fail still counts its failures on the other one', async () => {
    const guesser = device('guesser');
    for (let i = 0; i < 10; i++) expect((await join(a, 'ZZZZZ2', guesser)).status).toBe(404);
    expect(await join(b, 'ZZZZZ2', guesser)).toMatchObject({ status: 429, code: 'rate_limited' });
  });

  it('limits - joins of devices without wrong codes cost no look-up in the shared store', async () => {
    const lobby = await client.call('lobby.create', device('admin'), { max_participants: 20 });
    const lookups = countLookups();
    try {
      await client.nc.flush();
      for (let i = 0; i < 6; i++) expect((await join(i % 2 ? b : a, lobby.code, device('honest'))).status).toBe(200);
      await client.nc.flush();
      expect(lookups.count()).toBe(0);
      // A device that typed one wrong code is looked up (exactly, across replicas) from then on.
      const typo = device('typo');
      expect((await join(a, 'ZZZZZ2', typo)).status).toBe(404);
      expect((await join(a, lobby.code, typo)).status).toBe(200);
      await waitFor(() => lookups.count() === 1, { message: 'one look-up for the device that failed once' });
    } finally {
      lookups.sub.unsubscribe();
    }
  });

  it('limits - with the shared store gone, joins fail open and wrong codes are counted per replica (logged once)', async () => {
    const lobby = await client.call('lobby.create', device('admin'), {});
    const jsm = await jetstreamManager(client.nc);
    await jsm.streams.delete(`KV_${joinFailuresBucket(env.stream)}`);
    const guesser = device('guesser');
    for (let i = 0; i < 10; i++) expect((await join(a, 'ZZZZZ3', guesser)).status).toBe(404);
    expect(await join(a, lobby.code, guesser)).toMatchObject({ status: 429, code: 'rate_limited' });
    // Joins are not refused for the outage.
    expect((await join(a, lobby.code, device('friend'))).status).toBe(200);
    expect((await join(b, lobby.code, device('friend'))).status).toBe(200);
    const warnings = logs.filter((l) => l.msg.startsWith('join-failure store unreachable'));
    // One line per replica that noticed (a, and b if its watch saw the bucket go), not one per join.
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings.length).toBeLessThanOrEqual(2);
  });
});
