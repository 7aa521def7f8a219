/**
 * The shipping app and the v1 Gateway, replayed (CONTRACT section 8): phones that behave like
 * the Flutter app (src/sim) run whole measurements over NATS, and over the v1 wiring: a fake v1
 * Gateway POSTing to /gateway/handle without a token and receiving every broadcast on its
 * /internal/broadcast, both sides given the same INTERNAL_AUTH_TOKEN, as v1 ran them.
 *
 * The phones send exactly the app's frames (its own device_id inside step data, `slot_label:
 * null`, role `none` with null slots, the code as typed in lower case, `lobby.get {code}` after
 * every `lobby.updated`, step/profile on every join, the room while the session runs,
 * `start_speaker` 500 ms after `create_session`), and check the type of every field the app
 * casts: any violation fails these tests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import type { App } from '../../src/app.js';
import { Measurement, type MeasurementOptions, type MeasurementResult } from '../../src/sim/measurement.js';
import { NatsPhoneTransport } from '../../src/sim/nats-transport.js';
import type { PhoneTransport } from '../../src/sim/transport.js';
import { natsUrl } from '../helpers/infra.js';
import { createTestEnv, deleteStream, startService, type TestEnv } from '../helpers/service.js';
import { FakeV1Gateway } from '../helpers/v1-gateway.js';

const SHARED_TOKEN = 'v1-shared-internal-token';
/** Auto-advance's pause (NEXT_SPEAKER_DELAY_MS) in these tests. */
const NEXT_SPEAKER_DELAY_MS = 300;

interface Path {
  name: string;
  env?: Awaited<ReturnType<typeof createTestEnv>>;
  app?: App;
  transport?: PhoneTransport;
  stop(): Promise<void>;
}

let nc: NatsConnection | undefined;
let gateway: FakeV1Gateway | undefined;

const nats: Path = {
  name: 'NATS',
  async stop() {
    await (this.transport as NatsPhoneTransport | undefined)?.close();
    await nc?.close();
  },
};
const v1: Path = {
  name: 'v1 Gateway',
  async stop() {
    await gateway?.stop();
  },
};

async function startPath(path: Path, extra: Record<string, string>): Promise<void> {
  path.env = await createTestEnv({ NEXT_SPEAKER_DELAY_MS: String(NEXT_SPEAKER_DELAY_MS), ...extra });
  path.app = await startService(path.env.env);
}

beforeAll(async () => {
  gateway = await FakeV1Gateway.start(SHARED_TOKEN);
  await Promise.all([
    startPath(nats, {}),
    // v1's wiring, unchanged: the same INTERNAL_AUTH_TOKEN on both sides, no HTTP_AUTH_TOKEN.
    startPath(v1, { GATEWAY_URL: gateway.url, INTERNAL_AUTH_TOKEN: SHARED_TOKEN }),
  ]);
  nc = await connect({ servers: natsUrl(), maxReconnectAttempts: -1, noAsyncTraces: true });
  nats.transport = new NatsPhoneTransport(nc, { prefix: nats.env!.prefix });
  gateway.connectTo(v1.app!.httpUrl);
  v1.transport = gateway;
});

afterAll(async () => {
  for (const p of [nats, v1]) {
    await p.stop();
    await p.app?.stop();
    if (p.env) {
      await deleteStream(p.env as TestEnv).catch(() => undefined);
      await p.env.db.drop();
    }
  }
});

const explain = (r: MeasurementResult) =>
  JSON.stringify({ outcome: r.outcome, reason: r.reason, violations: r.violations, errors: r.errors, warnings: r.warnings }, null, 2);

async function measure(path: Path, opts: MeasurementOptions): Promise<MeasurementResult> {
  const r = await new Measurement(path.transport!, {
    lowercaseCode: true,
    extras: 1,
    timeoutMs: 20_000,
    ...opts,
  }).run();
  expect(r.outcome, explain(r)).toBe('completed');
  // Every field the app casts had the type it casts to, and every lobby.get showed the change.
  expect(r.violations).toEqual([]);
  // Nothing the app sent was refused.
  expect(r.errors).toEqual([]);
  // The create_session reply was there before the app's 500 ms timer.
  expect(r.startSpeakerSkipped).toBe(false);
  expect(r.createSessionReplyMs).toBeLessThan(500);
  // Only `speaker_complete` is a phase the app does not know (it shows it as idle).
  expect(new Set(r.warnings)).toEqual(new Set(r.warnings.filter((w) => w === 'unknown phase "speaker_complete" (the app shows idle)')));
  return r;
}

const startSpeakers = (r: MeasurementResult) => r.timings.records.filter((x) => x.step === 'start_speaker');

describe.each([nats, v1])('app replay over $name', (path) => {
  it('app - a 1-speaker session with 3 microphones completes with the app\'s exact frames', async () => {
    const r = await measure(path, { speakers: 1, microphones: 3, jitterMs: 10 });
    expect(startSpeakers(r)).toHaveLength(1);
  });

  it('app - a 2-speaker session completes without a second start_speaker (auto-advance)', async () => {
    const r = await measure(path, { speakers: 2, microphones: 2 });
    // The app's timer sent one start_speaker; the service started the second cycle itself.
    expect(startSpeakers(r)).toHaveLength(1);
    expect(r.timings.stepLatencies().ready).toHaveLength(2);
  });

  it('app - a v1-style admin that sends start_speaker itself works, before or after auto-advance', async () => {
    // Before the pause is over: the admin's start_speaker starts the next cycle (the timer is dropped).
    const early = await measure(path, { speakers: 2, microphones: 2, v1NextSpeakerAfterMs: 0 });
    expect(startSpeakers(early).map((x) => x.status)).toEqual(['accepted', 'accepted']);
    expect(early.timings.stepLatencies().ready).toHaveLength(2);
    // After auto-advance started it (and while that cycle plays): a harmless duplicate.
    const late = await measure(path, { speakers: 2, microphones: 2, playbackMs: 1_200, v1NextSpeakerAfterMs: NEXT_SPEAKER_DELAY_MS + 300 });
    expect(startSpeakers(late).map((x) => x.status)).toEqual(['accepted', 'duplicate']);
    expect(late.timings.stepLatencies().ready).toHaveLength(2);
  });
});

describe('app replay - the v1 wiring', () => {
  it('v1 - /gateway/handle needs no token and every sink POST carries the shared one', async () => {
    expect(gateway!.statuses.length).toBeGreaterThan(50);
    expect(gateway!.statuses.every((s) => s === 200)).toBe(true);
    expect(gateway!.accepted).toBeGreaterThan(50);
    expect(gateway!.refused).toBe(0);
  });
});
