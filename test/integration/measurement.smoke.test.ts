import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { device, startHarness } from '../helpers/service.js';

let h: Awaited<ReturnType<typeof startHarness>>;
beforeAll(async () => {
  h = await startHarness({ PUBLIC_BASE_URL: 'https://api.example.test', ...(process.env.SMOKE_DB ? { DATABASE_URL: process.env.SMOKE_DB } : {}) });
});
afterAll(async () => {
  await h?.stop();
});

describe('measurement smoke', () => {
  it('session - one speaker, two microphones run to session_complete', async () => {
    const c = h.client;
    const admin = device('admin');
    const spk = device('spk');
    const m1 = device('m1');
    const m2 = device('m2');
    const lobby = await c.call('lobby.create', admin, {});
    for (const d of [spk, m1, m2]) await c.call('lobby.join', d, { code: lobby.code });
    const L = lobby.lobby_id;
    await c.call('role.assign', admin, { lobby_id: L, target_device_id: spk, role: 'speaker', role_slot_id: 'S1' });
    await c.call('role.assign', admin, { lobby_id: L, target_device_id: m1, role: 'microphone', role_slot_id: 'M1' });
    await c.call('role.assign', admin, { lobby_id: L, target_device_id: m2, role: 'microphone', role_slot_id: 'M2' });
    const created = await c.call('measurement.create_session', admin, {
      job_id: 'job-1',
      lobby_id: L,
      speakers: [{ device_id: spk, slot_id: 'S1' }],
      microphones: [
        { device_id: m1, slot_id: 'M1' },
        { device_id: m2, slot_id: 'M2' },
      ],
    });
    const S = created.session_id;
    expect(created).toMatchObject({ state: 'created', total_speakers: 1, total_microphones: 2 });
    await c.call('measurement.start_speaker', admin, { session_id: S });
    for (const d of [spk, m1, m2]) await c.call('measurement.client_ready', d, { session_id: S });
    const ra = await c.waitFor(L, 'measurement.request_audio');
    expect(ra[0]!.data.audio_url).toBe(`https://api.example.test/v1/measurement/audio?session_id=${S}`);
    expect(ra[0]!.targets.device_ids).toEqual([spk]);
    await c.call('measurement.speaker_audio_ready', spk, { session_id: S, audio_hash: 'abc' });
    for (const d of [m1, m2]) await c.call('measurement.recording_started', d, { session_id: S });
    await c.call('measurement.speaker_finished', spk, { session_id: S });
    for (const d of [m1, m2]) await c.call('measurement.recording_uploaded', d, { session_id: S, upload_name: `${d}.wav` });
    const done = await c.waitFor(L, 'measurement.session_complete');
    expect(done[0]!.data).toMatchObject({ session_id: S, job_id: 'job-1', completed_speakers: ['S1'], audio_hash: 'abc' });
    const status = await c.call('measurement.session_status', m1, { session_id: S });
    expect(status).toMatchObject({ state: 'completed', phase: 'completed', completed_speakers: 1 });
    const l = await c.call('lobby.get', admin, { lobby_id: L });
    expect(l.state).toBe('open');
    expect(l.active_session_id).toBeNull();
  });

  it('session - a short ready deadline fails the cycle with timeout', async () => {
    const c = h.client;
    const admin = device('admin');
    const spk = device('spk');
    const m1 = device('m1');
    const lobby = await c.call('lobby.create', admin, {});
    const L = lobby.lobby_id;
    for (const d of [spk, m1]) await c.call('lobby.join', d, { code: lobby.code });
    await c.call('role.assign', admin, { lobby_id: L, target_device_id: spk, role: 'speaker' });
    await c.call('role.assign', admin, { lobby_id: L, target_device_id: m1, role: 'microphone' });
    const { session_id: S } = await c.call('measurement.create_session', admin, {
      job_id: 'j', lobby_id: L, speakers: [{ device_id: spk, slot_id: 'S' }], microphones: [{ device_id: m1, slot_id: 'M' }],
      timeouts: { ready_ms: 300 },
    });
    await c.call('measurement.start_speaker', admin, { session_id: S });
    await c.call('measurement.ready', spk, { session_id: S });
    const err = await c.waitFor(L, 'measurement.error');
    expect(err[0]!.data).toMatchObject({ error_code: 'timeout', phase: 'waiting_ready', missing_device_ids: [m1] });
  });
});
