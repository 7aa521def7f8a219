/**
 * The floor of a session step (b): what a step -> broadcast round must cost at least, measured
 * in the same run at the same concurrency, in two parts summed by the caller:
 *   - a bare NATS echo round trip: a responder in the bench process, a request of a step's
 *     size answered with a body of a broadcast's size (the step request and the broadcast
 *     each cross NATS once);
 *   - one bare transaction (bare-sql.ts `bareStep`: lock, update, insert, commit).
 */
import type { NatsConnection } from '@nats-io/nats-core';
import type pg from 'pg';
import { bareStep, loadBareSessions } from './bare-sql.js';
import { pool, since, summarize, type Summary } from './stats.js';

/** A `measurement.ready` body as the app sends it. */
const STEP_BODY = JSON.stringify({ session_id: '6f1c1e7a-4d0b-4f59-9a3e-0c6f2b8e9d11', device_id: 'c5a2b1e4-0d3f-4a8b-9e7c-1f2d3e4a5b6c' });
/** A `measurement.request_audio` envelope's size (~450 bytes). */
const BROADCAST_BODY = JSON.stringify({
  id: 123456,
  event: 'measurement.request_audio',
  lobby_id: '9b2e4c1a-7d3f-4e8b-a6c5-2d1f0e9b8a7c',
  session_id: '6f1c1e7a-4d0b-4f59-9a3e-0c6f2b8e9d11',
  data: {
    session_id: '6f1c1e7a-4d0b-4f59-9a3e-0c6f2b8e9d11',
    audio_url: 'http://127.0.0.1:8001/v1/measurement/audio?session_id=6f1c1e7a-4d0b-4f59-9a3e-0c6f2b8e9d11',
  },
  targets: { device_ids: ['c5a2b1e4-0d3f-4a8b-9e7c-1f2d3e4a5b6c'] },
  created_at: new Date(0).toISOString(),
});

/** `count` echo round trips with `concurrency` callers; the responder runs in this process. */
export async function echoFloor(nc: NatsConnection, subject: string, concurrency: number, count: number): Promise<Summary> {
  const reply = new TextEncoder().encode(BROADCAST_BODY);
  const sub = nc.subscribe(subject, { callback: (_e, m) => void m.respond(reply) });
  try {
    await nc.flush();
    const samples: number[] = [];
    const body = new TextEncoder().encode(STEP_BODY);
    // Warm the path (JIT, buffers) before measuring.
    await pool(concurrency * 4, concurrency, async () => void (await nc.request(subject, body, { timeout: 10_000 })));
    await pool(count, concurrency, async () => {
      const t0 = performance.now();
      await nc.request(subject, body, { timeout: 10_000 });
      samples.push(since(t0));
    });
    return summarize(samples);
  } finally {
    sub.unsubscribe();
  }
}

/**
 * `count` bare step transactions with `concurrency` callers, each caller on its own session
 * (the sessions a scenario left in the database), as concurrent sessions would.
 */
export async function stepTxFloor(db: pg.Pool, concurrency: number, count: number): Promise<Summary> {
  const sessions = await loadBareSessions(db, concurrency);
  if (sessions.length === 0) throw new Error('step floor: no session rows to run the bare transaction on');
  await pool(concurrency * 2, concurrency, (_i, w) => bareStep(db, sessions[w % sessions.length]!));
  const samples: number[] = [];
  await pool(count, concurrency, async (_i, w) => {
    const t0 = performance.now();
    await bareStep(db, sessions[w % sessions.length]!);
    samples.push(since(t0));
  });
  return summarize(samples);
}
