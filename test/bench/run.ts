/**
 * Benchmark: `npm run bench`. Starts the service in-process (its own subject prefix and
 * stream) and prints figures:
 *   - lobby.join: requests/second and latency percentiles at a given concurrency;
 *   - one full measurement cycle (1 speaker x 3 microphones) end to end, devices answering at once;
 *   - many sessions side by side.
 * Database: DATABASE_URL (a PostgreSQL database to use; its tables are created) or the embedded
 * database in memory. NATS: NATS_URL or nats://127.0.0.1:4222.
 * Knobs: BENCH_JOINS (default 2000), BENCH_CONCURRENCY (50), BENCH_SESSIONS (20),
 * BENCH_LOBBY_SIZE (guests per lobby, 8; at most 63).
 */
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { Header, allBroadcastsFilter, type Envelope, type ReplyOf, type Subject } from '../../subjects/index.js';
import { startApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';

const id = `bench_${randomBytes(4).toString('hex')}`;
const env = {
  NATS_URL: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
  NATS_SUBJECT_PREFIX: id,
  NATS_STREAM: id.toUpperCase(),
  DATABASE_URL: process.env.DATABASE_URL ?? 'memory:',
  HTTP_PORT: '0',
  LOG_LEVEL: 'warn',
  RATE_LIMIT_PER_SECOND: '100000',
  RATE_LIMIT_BURST: '1000000',
  MAX_PARTICIPANTS: '64',
};
/** Guests per lobby: every lobby.updated carries the whole lobby, so size drives the cost. */
const LOBBY_SIZE = Number(process.env.BENCH_LOBBY_SIZE ?? 8);
const JOINS = Number(process.env.BENCH_JOINS ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 20);

const enc = new TextEncoder();
let nc: NatsConnection;

async function call<S extends Subject>(subject: S, device: string, data: object): Promise<ReplyOf<S>> {
  const h = natsHeaders();
  h.set(Header.deviceId, device);
  const m = await nc.request(`${env.NATS_SUBJECT_PREFIX}.${subject}`, enc.encode(JSON.stringify(data)), {
    headers: h,
    timeout: 30_000,
  });
  if (m.headers?.has(Header.serviceErrorCode)) throw new Error(`${subject}: ${m.string()}`);
  return m.json<ReplyOf<S>>();
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function benchJoins(): Promise<void> {
  // Lobbies of LOBBY_SIZE guests; consecutive joins go to different lobbies, like real traffic.
  const lobbies: string[] = [];
  for (let i = 0; i < Math.ceil(JOINS / LOBBY_SIZE); i++) lobbies.push((await call('lobby.create', `admin-${i}`, {})).code);
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < JOINS; i = next++) {
        const s = performance.now();
        await call('lobby.join', `guest-${i}`, { code: lobbies[i % lobbies.length] });
        latencies.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  console.log(
    `lobby.join: ${JOINS} joins into lobbies of ${LOBBY_SIZE + 1}, concurrency ${CONCURRENCY}: ${(JOINS / secs).toFixed(0)} joins/s; ` +
      `latency p50 ${pct(latencies, 50).toFixed(1)} ms, p95 ${pct(latencies, 95).toFixed(1)} ms, p99 ${pct(latencies, 99).toFixed(1)} ms`,
  );
}

/** Devices that answer every trigger at once, like the Gateway relaying to fast phones. */
function autoDevices(sessionEnds: Map<string, () => void>): void {
  nc.subscribe(allBroadcastsFilter(`${env.NATS_SUBJECT_PREFIX}.`), {
    callback: (_e, m) => {
      const b = m.json<Envelope>();
      const sid = b.session_id!;
      const d = b.data as Record<string, unknown>;
      const each = (subject: Subject, extra: (dev: string) => object = () => ({})) =>
        b.targets.device_ids.forEach((dev) => void call(subject, dev, { session_id: sid, ...extra(dev) }).catch(() => undefined));
      switch (b.event) {
        case 'measurement.start_measurement':
          return each('measurement.ready');
        case 'measurement.request_audio':
          return each('measurement.speaker_audio_ready');
        case 'measurement.start_recording':
          return each('measurement.recording_started');
        case 'measurement.start_playback':
          return each('measurement.playback_complete');
        case 'measurement.stop_recording':
          return each('measurement.recording_uploaded', (dev) => ({ upload_name: `${dev}-${String(d.speaker_slot_id)}.wav` }));
        case 'measurement.session_complete':
          return sessionEnds.get(sid)?.();
      }
    },
  });
}

async function setupSession(n: number, speakers: number, mics: number) {
  const admin = `sadmin-${n}`;
  const lobby = await call('lobby.create', admin, {});
  const spk = Array.from({ length: speakers }, (_, i) => ({ device_id: `s${n}-spk${i}`, slot_id: `S${i}` }));
  const mic = Array.from({ length: mics }, (_, i) => ({ device_id: `s${n}-mic${i}`, slot_id: `M${i}` }));
  for (const s of [...spk, ...mic]) await call('lobby.join', s.device_id, { code: lobby.code });
  for (const s of spk) await call('role.assign', admin, { lobby_id: lobby.lobby_id, target_device_id: s.device_id, role: 'speaker' });
  for (const s of mic) await call('role.assign', admin, { lobby_id: lobby.lobby_id, target_device_id: s.device_id, role: 'microphone' });
  const created = await call('measurement.create_session', admin, {
    job_id: `job-${n}`,
    lobby_id: lobby.lobby_id,
    speakers: spk,
    microphones: mic,
  });
  return { admin, session: created.session_id };
}

async function runSessions(count: number, speakers: number, mics: number, ends: Map<string, () => void>): Promise<number[]> {
  const prepared = await Promise.all(Array.from({ length: count }, (_, i) => setupSession(i + count * 1000, speakers, mics)));
  return Promise.all(
    prepared.map(async ({ admin, session }) => {
      const durations: number[] = [];
      for (let s = 0; s < speakers; s++) {
        const done = new Promise<void>((resolve) => ends.set(session, resolve));
        const t0 = performance.now();
        await call('measurement.start_speaker', admin, { session_id: session });
        if (s === speakers - 1) await done;
        else await waitPhase(session, 'speaker_complete');
        durations.push(performance.now() - t0);
      }
      return durations.reduce((a, b) => a + b, 0);
    }),
  );
}

async function waitPhase(session: string, phase: string): Promise<void> {
  for (;;) {
    const st = await call('measurement.session_status', `poller`, { session_id: session }).catch(() => null);
    if (st?.phase === phase) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function main(): Promise<void> {
  const config = loadConfig(env);
  const app = await startApp(config, createLogger(config.logLevel));
  nc = await connect({ servers: env.NATS_URL, noAsyncTraces: true });
  const ends = new Map<string, () => void>();
  autoDevices(ends);
  try {
    console.log(`database: ${config.database.kind}; NATS: ${env.NATS_URL}`);
    await benchJoins();
    const [one] = await runSessions(1, 1, 3, ends);
    console.log(`measurement: one full cycle (1 speaker x 3 microphones), devices answering at once: ${one!.toFixed(1)} ms`);
    const t0 = performance.now();
    const many = (await runSessions(SESSIONS, 1, 3, ends)).sort((a, b) => a - b);
    console.log(
      `measurement: ${SESSIONS} sessions side by side (1 x 3 each): all done in ${(performance.now() - t0).toFixed(0)} ms; ` +
        `per-session cycle p50 ${pct(many, 50).toFixed(1)} ms, max ${many[many.length - 1]!.toFixed(1)} ms`,
    );
    console.log(`outbox: ${app.relay.delivered} events published to JetStream`);
  } finally {
    await app.stop();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(env.NATS_STREAM).catch(() => undefined);
    await nc.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
