// Steps of one session that arrive together are committed together (one write for the lot),
// and each is still answered, logged and broadcast exactly as if it had come alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StepReply } from '../../subjects/index.js';
import { startHarness } from '../helpers/service.js';
import { createSession, expectError, loggedEvents, micIds, setupLobby, uploadName } from '../helpers/measurement.js';

let h: Awaited<ReturnType<typeof startHarness>>;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

describe('session steps committed together', () => {
  it('batch - concurrent steps of one session share writes; replies, events and keys are as if alone', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 12 });
    const S = await createSession(c, L);
    const mics = micIds(L);
    const spk = L.speakers[0]!.device_id;
    expect((await c.call('measurement.start_speaker', L.admin, { session_id: S })).status).toBe('accepted');
    const before = { ...h.app.lobbies.batches };

    // Everyone at once, each ready sent twice; one microphone with an Idempotency-Key, twice.
    const everyone = [spk, ...mics];
    const sends = [
      ...everyone.map((d) => c.send('measurement.ready', d, { session_id: S })),
      ...everyone.map((d) => c.send('measurement.ready', d, { session_id: S })),
      c.send('measurement.ready', mics[0]!, { session_id: S }, { idempotencyKey: 'ready-m1' }),
      // The same key sent twice at once (a client retrying before its first reply came).
      c.send('measurement.ready', mics[2]!, { session_id: S }, { idempotencyKey: 'ready-m3' }),
      c.send('measurement.ready', mics[2]!, { session_id: S }, { idempotencyKey: 'ready-m3' }),
      // Out of phase for the lot: refused, whatever else it is committed with.
      c.send('measurement.recording_started', mics[1]!, { session_id: S }),
    ];
    const replies = await Promise.all(sends);
    const steps = replies.slice(0, 2 * everyone.length).map((r) => r.data as StepReply);
    // Each device was accepted once and answered `duplicate` once, whatever the batching.
    for (const d of everyone) {
      const mine = [steps[everyone.indexOf(d)]!, steps[everyone.length + everyone.indexOf(d)]!].map((r) => r.status).sort();
      expect(mine, d).toEqual(['accepted', 'duplicate']);
    }
    const m1 = replies[2 * everyone.length]!;
    expect((m1.data as StepReply).status).toBe('duplicate');
    // Both sends of one key get the same reply: the key's first outcome.
    const [m3a, m3b] = replies.slice(2 * everyone.length + 1, 2 * everyone.length + 3);
    expect(m3a!.data).toEqual(m3b!.data);
    expectError(replies.at(-1)!, 'wrong_phase');
    // The key keeps its first reply, committed with the batch it was in.
    const retry = await c.send('measurement.ready', mics[0]!, { session_id: S }, { idempotencyKey: 'ready-m1' });
    expect(retry.data).toEqual(m1.data);
    const retry3 = await c.send('measurement.ready', mics[2]!, { session_id: S }, { idempotencyKey: 'ready-m3' });
    expect(retry3.data).toEqual(m3a!.data);

    // The service did write several steps at once.
    expect(h.app.lobbies.batches.writes).toBeGreaterThan(before.writes);

    // One request_audio, after the last ready; the log is in order, each step's phase_update
    // right after its trigger, and every accepted ready is in the session's timeline.
    const events = await loggedEvents(c, L);
    const since = events.filter((e) => e.type.startsWith('measurement.') && e.payload.session_id === S);
    expect(since.filter((e) => e.type === 'measurement.request_audio')).toHaveLength(1);
    expect(since.map((e) => e.type).slice(-2)).toEqual(['measurement.request_audio', 'measurement.phase_update']);
    const rows = await h.app.db.sql.query<{ step: string; device_id: string }>(
      `select step, device_id from session_steps where session_id = $1 and step = 'ready' order by id`,
      [S],
    );
    expect(rows.map((r) => r.device_id).sort()).toEqual([...everyone].sort());

    // The rest of the cycle, every microphone at once at each step, still completes.
    expect((await c.call('measurement.speaker_audio_ready', spk, { session_id: S })).phase).toBe('starting_recording');
    await Promise.all(mics.map((m) => c.call('measurement.recording_started', m, { session_id: S })));
    await c.call('measurement.playback_complete', spk, { session_id: S });
    const ups = await Promise.all(
      mics.map((m) => c.call('measurement.recording_uploaded', m, { session_id: S, upload_name: uploadName(L, 0, m) })),
    );
    expect(ups.filter((r) => r.state === 'completed').length).toBeGreaterThanOrEqual(1);
    const status = await c.call('measurement.session_status', L.admin, { session_id: S });
    expect(status).toMatchObject({ state: 'completed', phase: 'completed' });
    expect(status.recordings).toHaveLength(mics.length);
  });
});
