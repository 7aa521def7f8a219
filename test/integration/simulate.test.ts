/**
 * App-like phones (src/sim) over the NATS transport against the service in-process: whole
 * measurements run to completion with the app's exact messages, and every field the app casts
 * has the type it expects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { EventName, Header, SessionCreate, Subject, broadcastSubject, type Envelope } from '../../subjects/index.js';
import type { App } from '../../src/app.js';
import { Measurement, type MeasurementResult } from '../../src/sim/measurement.js';
import { NatsPhoneTransport } from '../../src/sim/nats-transport.js';
import { STEPS, StepTimings } from '../../src/sim/timings.js';
import { natsUrl, uniqueId, waitFor } from '../helpers/infra.js';
import { createTestEnv, deleteStream, startService, type TestEnv } from '../helpers/service.js';

let env: Awaited<ReturnType<typeof createTestEnv>>;
let app: App;
let nc: NatsConnection;
let transport: NatsPhoneTransport;

beforeAll(async () => {
  env = await createTestEnv({ NEXT_SPEAKER_DELAY_MS: '50' });
  app = await startService(env.env);
  nc = await connect({ servers: natsUrl(), maxReconnectAttempts: -1, noAsyncTraces: true });
  transport = new NatsPhoneTransport(nc, { prefix: env.prefix });
  await nc.flush();
});

afterAll(async () => {
  await transport?.close();
  await nc?.close();
  await app?.stop();
  await deleteStream(env as TestEnv).catch(() => undefined);
  await env?.db.drop();
});

const explain = (r: MeasurementResult) =>
  JSON.stringify({ outcome: r.outcome, reason: r.reason, violations: r.violations, errors: r.errors }, null, 2);

describe('simulate - app-like phones over NATS', () => {
  it('simulate - three 1 x 2 sessions complete side by side with no protocol violation', async () => {
    const timings = new StepTimings();
    const runs = Array.from(
      { length: 3 },
      (_, i) => new Measurement(transport, { speakers: 1, microphones: 2, extras: i === 0 ? 1 : 0, lowercaseCode: i === 1, jitterMs: 5, timeoutMs: 8000, timings }),
    );
    const results = await Promise.all(runs.map((m) => m.run()));
    for (const r of results) {
      expect(r.outcome, explain(r)).toBe('completed');
      expect(r.violations).toEqual([]);
      expect(r.errors).toEqual([]);
      expect(r.startSpeakerSkipped).toBe(false);
      expect(r.createSessionReplyMs).toBeLessThan(500);
    }
    // Every step of every session was sent and its resulting command arrived.
    expect(timings.unresolved()).toEqual([]);
    const latencies = timings.stepLatencies();
    for (const step of STEPS) expect(latencies[step], step).toHaveLength(3);
    expect(timings.createSessionReplyMs).toHaveLength(3);
    // The app's phase list lacks `speaker_complete`: it shows it as idle, which is only a warning.
    expect(results.flatMap((r) => r.warnings).every((w) => w.startsWith('unknown phase'))).toBe(true);
  });

  // The app never sends start_speaker for the second speaker: only the service's auto-advance
  // (create_session's `auto_advance`) moves on, so this runs once the service has it.
  it.skipIf(!('auto_advance' in SessionCreate.shape))('simulate - a 2-speaker session completes by auto-advance alone', async () => {
    const r = await new Measurement(transport, { speakers: 2, microphones: 2, timeoutMs: 8000 }).run();
    expect(r.outcome, explain(r)).toBe('completed');
    expect(r.violations).toEqual([]);
    // start_speaker once by the app's timer; the second cycle came from the service itself.
    expect(r.timings.records.filter((x) => x.step === 'start_speaker')).toHaveLength(1);
    expect(r.timings.stepLatencies().ready).toHaveLength(2);
  });

  it('simulate - duplicated steps are harmless', async () => {
    const r = await new Measurement(transport, { speakers: 1, microphones: 3, duplicateRate: 1, timeoutMs: 8000 }).run();
    expect(r.outcome, explain(r)).toBe('completed');
    expect(r.errors).toEqual([]);
    expect(r.duplicates).toBe(r.timings.records.length);
    // One copy of each step was taken, the other answered `duplicate`.
    expect(r.timings.records.every((x) => x.status === 'accepted')).toBe(true);
  });
});

describe('simulate - the NATS transport plays the Gateway', () => {
  it('simulate - requests carry Device-Id and a microsecond Request-Id (a UUID for room snapshots)', async () => {
    const prefix = `${uniqueId('fake')}.`;
    const seen: Array<{ subject: string; device?: string; request?: string }> = [];
    const sub = nc.subscribe(`${prefix}>`, {
      callback: (_e, m) => {
        seen.push({ subject: m.subject, device: m.headers?.get(Header.deviceId), request: m.headers?.get(Header.requestId) });
        if (m.subject.endsWith(Subject['lobby.get'])) m.respond(JSON.stringify({ lobby_id: 'L' }));
        else {
          const h = natsHeaders();
          h.set(Header.serviceErrorCode, '404');
          h.set(Header.serviceError, 'lobby not found');
          m.respond(JSON.stringify({ error: { code: 'lobby_not_found', message: 'lobby not found' } }), { headers: h });
        }
      },
    });
    const t = new NatsPhoneTransport(nc, { prefix });
    try {
      const before = Date.now() * 1000;
      expect(await t.request('dev-1', Subject['lobby.get'], { code: 'ABC' })).toEqual({ ok: true, data: { lobby_id: 'L' } });
      expect(await t.request('dev-1', Subject['lobby.room_snapshot'], { lobby_id: 'L', room: {} })).toEqual({
        ok: false,
        status: 404,
        error: { code: 'lobby_not_found', message: 'lobby not found' },
      });
      expect(seen.map((x) => [x.subject, x.device])).toEqual([
        [`${prefix}lobby.get`, 'dev-1'],
        [`${prefix}lobby.room_snapshot`, 'dev-1'],
      ]);
      expect(seen[0]!.request).toMatch(/^\d{16}$/);
      expect(Number(seen[0]!.request)).toBeGreaterThanOrEqual(before);
      expect(seen[1]!.request).toMatch(/^[0-9a-f-]{36}$/);
      expect(t.counters).toMatchObject({ requests: 2, errors: 1 });
    } finally {
      sub.unsubscribe();
      await t.close();
    }
  });

  it('simulate - an envelope reaches only its targets, once per lobby and id', async () => {
    const prefix = `${uniqueId('fake')}.`;
    const t = new NatsPhoneTransport(nc, { prefix });
    const got: Record<string, unknown[]> = { a: [], b: [], c: [] };
    for (const d of Object.keys(got)) t.attach(d, (event, data) => got[d]!.push([event, data]));
    await nc.flush();
    const envelope = (lobby: string, id: number, targets: string[]): Envelope => ({
      id,
      event: EventName['lobby.step_update'],
      lobby_id: lobby,
      session_id: null,
      data: { lobby_id: lobby, step_index: id, source_device_id: 'x' },
      targets: { device_ids: targets },
      created_at: new Date().toISOString(),
    });
    const publish = (e: Envelope) => nc.publish(broadcastSubject(e.lobby_id, e.event, prefix), JSON.stringify(e));
    try {
      publish(envelope('L1', 1, ['a', 'b']));
      publish(envelope('L1', 1, ['a', 'b'])); // a re-publish after a crash
      publish(envelope('L2', 1, ['c'])); // the same id in another lobby is another event
      publish(envelope('L1', 2, ['b']));
      await waitFor(() => t.counters.broadcasts === 4);
      expect(t.counters.duplicateBroadcasts).toBe(1);
      expect(got.a).toHaveLength(1);
      expect(got.b).toHaveLength(2);
      expect(got.c).toEqual([[EventName['lobby.step_update'], { lobby_id: 'L2', step_index: 1, source_device_id: 'x' }]]);
    } finally {
      await t.close();
    }
  });
});
