/**
 * A measurement session over real NATS and PostgreSQL, exactly as CONTRACT section 3 says:
 * every broadcast in order with its targets and data, every step's reply, the session status
 * along the way, and the JetStream stream holding the same events once each.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PHASE_DESCRIPTIONS, type Envelope, type EventName, type Phase, type SessionStatus } from '../../subjects/index.js';
import {
  LobbyWatcher,
  createSession,
  expectError,
  expectStreamMatches,
  lastEventId,
  median,
  micIds,
  runCycle,
  sessionDevices,
  setupLobby,
  uploadName,
  type StepRecord,
} from '../helpers/measurement.js';
import { waitFor } from '../helpers/infra.js';
import { startHarness } from '../helpers/service.js';

const BASE = 'https://lobby.example.test/api';
const TIMEOUTS = { ready_ms: 20_000, audio_ms: 21_000, recording_start_ms: 22_000, playback_ms: 23_000, upload_ms: 24_000 };
const PHASE_TIMEOUT: Partial<Record<Phase, number>> = {
  waiting_ready: TIMEOUTS.ready_ms,
  speaker_downloading: TIMEOUTS.audio_ms,
  starting_recording: TIMEOUTS.recording_start_ms,
  playing: TIMEOUTS.playback_ms,
  uploading: TIMEOUTS.upload_ms,
};

let h: Awaited<ReturnType<typeof startHarness>>;
beforeAll(async () => {
  // A trailing slash in PUBLIC_BASE_URL must not double the slash in the URLs.
  h = await startHarness({ PUBLIC_BASE_URL: `${BASE}/` });
});
afterAll(async () => {
  await h?.stop();
});

describe('session flow', () => {
  it('session - 2 speakers and 3 microphones run to session_complete, every broadcast to its targets in order', async () => {
    const c = h.client;
    // The admin and a guest are joined but no session devices: they get the "(all)" events only.
    const L = await setupLobby(c, { speakers: 2, microphones: 3, extras: 1 });
    const all = sessionDevices(L);
    const everyone = L.joined;
    expect(everyone).toEqual([L.admin, ...all, L.extras[0]]);
    const mics = micIds(L);
    const JOB = 'job-flow-1';
    const baseline = await lastEventId(c, L);

    const created = await c.call('measurement.create_session', L.admin, {
      job_id: JOB,
      lobby_id: L.lobbyId,
      speakers: L.speakers,
      microphones: L.microphones,
      signal_duration_seconds: 7.5,
      timeouts: TIMEOUTS,
      // v1 style: the admin starts every speaker (auto-advance has its own tests).
      auto_advance: false,
    });
    const S = created.session_id;
    expect(created).toEqual({
      session_id: S,
      job_id: JOB,
      lobby_id: L.lobbyId,
      state: 'created',
      total_speakers: 2,
      total_microphones: 3,
      audio_duration_seconds: 7.5,
    });
    const idle = await c.call('measurement.session_status', mics[0]!, { session_id: S });
    expect(idle).toMatchObject({ state: 'created', phase: 'idle', attempt: 0, deadline_at: null, completed_speakers: 0 });
    expect(idle.current).toEqual({ speaker_slot_id: null, ready: [], recording_started: [], uploaded: {}, missing_device_ids: [] });
    expect(idle.speakers).toEqual(L.speakers.map((s) => ({ ...s, completed: false })));

    // ---- drive both cycles one step at a time, checking each reply and the status after it
    const replies: StepRecord[] = [];
    for (const i of [0, 1]) {
      const spk = L.speakers[i]!.device_id;
      const cur = { ready: [] as string[], recording_started: [] as string[], uploaded: {} as Record<string, string> };
      const missing = (phase: Phase): string[] => {
        if (phase === 'waiting_ready') return [spk, ...mics].filter((d) => !cur.ready.includes(d));
        if (phase === 'speaker_downloading' || phase === 'playing') return [spk];
        if (phase === 'starting_recording') return mics.filter((d) => !cur.recording_started.includes(d));
        if (phase === 'uploading') return mics.filter((d) => cur.uploaded[d] === undefined);
        return [];
      };
      let entered = { phase: 'idle' as Phase, at: 0 };
      const records = await runCycle(c, L, S, i, {
        sequential: true,
        aliases: i === 1,
        onStep: async (r) => {
          if (r.subject.endsWith('ready') && r.subject !== 'measurement.speaker_audio_ready') cur.ready.push(r.device);
          if (r.subject === 'measurement.recording_started') cur.recording_started.push(r.device);
          if (r.subject === 'measurement.recording_uploaded') cur.uploaded[r.device] = r.data.upload_name as string;
          const st: SessionStatus = await c.call('measurement.session_status', mics[1]!, { session_id: S });
          expect(st.phase).toBe(r.reply.phase);
          expect(st.state).toBe(r.reply.state);
          expect(st.current).toEqual({ speaker_slot_id: L.speakers[i]!.slot_id, ...cur, missing_device_ids: missing(st.phase) });
          expect(st).toMatchObject({ current_speaker_index: i, attempt: 1, total_speakers: 2 });
          // The deadline is set when a phase is entered, from that phase's timeout.
          if (st.phase !== entered.phase) entered = { phase: st.phase, at: Date.parse(st.updated_at) };
          const timeout = PHASE_TIMEOUT[st.phase];
          if (timeout === undefined) expect(st.deadline_at).toBeNull();
          else expect(Date.parse(st.deadline_at!) - entered.at).toBe(timeout);
        },
      });
      replies.push(...records);
    }

    // Every step was accepted; the reply's phase is the phase the step led to.
    const phasesOf = (final: Phase): Phase[] => [
      'waiting_ready',
      ...Array<Phase>(3).fill('waiting_ready'),
      'speaker_downloading',
      'starting_recording',
      'starting_recording',
      'starting_recording',
      'playing',
      'uploading',
      'uploading',
      'uploading',
      final,
    ];
    expect(replies.map((r) => r.reply.status)).toEqual(Array(replies.length).fill('accepted'));
    expect(replies.map((r) => r.reply.phase)).toEqual([...phasesOf('speaker_complete'), ...phasesOf('completed')]);
    expect(replies.map((r) => r.reply.state).at(-1)).toBe('completed');
    expect(replies.every((r) => r.reply.ok && r.reply.session_id === S)).toBe(true);

    // ---- analysis results: admin only, job_id must match
    expectError(await c.send('measurement.broadcast_results', mics[0]!, { session_id: S, job_id: JOB, results: {} }), 'forbidden');
    const otherJob = { session_id: S, job_id: 'other', results: {} };
    expectError(await c.send('measurement.broadcast_results', L.admin, otherJob), 'invalid_request');
    const results = { rt60: [0.41, 0.44], ok: true };
    expect(await c.call('measurement.broadcast_results', L.admin, { session_id: S, job_id: JOB, results })).toEqual({ ok: true });

    // ---- the broadcasts, in order, with their targets and data
    const recs = (i: number) =>
      mics.map((m, k) => ({
        speaker_slot_id: L.speakers[i]!.slot_id,
        speaker_device_id: L.speakers[i]!.device_id,
        microphone_slot_id: L.microphones[k]!.slot_id,
        microphone_device_id: m,
        upload_name: uploadName(L, i, m),
      }));
    const expected: Array<{ event: EventName; targets: string[]; data: Record<string, unknown> }> = [];
    const push = (event: EventName, targets: string[], data: Record<string, unknown>) => expected.push({ event, targets, data });
    const phase = (p: Phase, i: number, completed: number) =>
      push('measurement.phase_update', all, {
        session_id: S,
        job_id: JOB,
        phase: p,
        phase_description: PHASE_DESCRIPTIONS[p],
        current_speaker_index: i,
        total_speakers: 2,
        completed_speakers: completed,
      });
    push('lobby.updated', L.joined, { type: 'state_changed', state: 'measurement_running', active_session_id: S });
    for (const i of [0, 1]) {
      const spk = L.speakers[i]!;
      push('measurement.start_measurement', all, {
        session_id: S,
        job_id: JOB,
        speaker_device_id: spk.device_id,
        speaker_slot_id: spk.slot_id,
        current_speaker_slot_id: spk.slot_id,
        current_speaker_slot_label: spk.slot_label ?? null,
        current_speaker_index: i,
        total_speakers: 2,
        total_microphones: 3,
        attempt: 1,
      });
      phase('waiting_ready', i, i);
      push('measurement.request_audio', [spk.device_id], { session_id: S, audio_url: `${BASE}/v1/measurement/audio?session_id=${S}` });
      phase('speaker_downloading', i, i);
      push('measurement.start_recording', mics, { session_id: S, speaker_slot_id: spk.slot_id, expected_duration_seconds: 7.5 });
      phase('starting_recording', i, i);
      push('measurement.start_playback', [spk.device_id], { session_id: S });
      phase('playing', i, i);
      push('measurement.stop_recording', mics, {
        session_id: S,
        job_id: JOB,
        speaker_slot_id: spk.slot_id,
        upload_endpoint: `${BASE}/v1/jobs/${JOB}/uploads/`,
      });
      phase('uploading', i, i);
      push('measurement.speaker_complete', everyone, {
        session_id: S,
        completed_speaker_slot_id: spk.slot_id,
        remaining_speakers: 1 - i,
        recordings: recs(i),
      });
      phase('speaker_complete', i, i + 1);
    }
    push('measurement.session_complete', everyone, {
      session_id: S,
      job_id: JOB,
      completed_speakers: ['S1', 'S2'],
      recordings: [...recs(0), ...recs(1)],
      audio_hash: 'hash-S2',
    });
    phase('completed', 1, 2);
    push('lobby.updated', L.joined, { type: 'state_changed', state: 'open', active_session_id: null });
    push('measurement.analysis_results', everyone, { session_id: S, job_id: JOB, results });

    const got = await waitFor(() => {
      const b = c.of(L.lobbyId).filter((e) => e.id > baseline);
      return b.length >= expected.length ? b : undefined;
    }, { message: 'waiting for every broadcast of the session' });
    expect(got.map((e) => e.event)).toEqual(expected.map((e) => e.event));
    for (const [k, e] of got.entries()) {
      const want = expected[k]!;
      expect(e.targets.device_ids, `targets of #${k} ${e.event}`).toEqual(want.targets);
      expect(e.lobby_id).toBe(L.lobbyId);
      if (e.event === 'lobby.updated') {
        expect(e.session_id).toBeNull();
        expect(e.data).toMatchObject({ ...want.data, lobby_id: L.lobbyId });
        expect(e.data.lobby).toMatchObject({ state: want.data.state, active_session_id: want.data.active_session_id });
      } else {
        expect(e.session_id).toBe(S);
        expect(e.data, `data of #${k} ${e.event}`).toEqual(want.data);
      }
    }
    const ids = got.map((e) => e.id);
    expect(ids).toEqual(ids.map((_, k) => ids[0]! + k)); // consecutive: nothing else was logged
    expect(got.length).toBe(c.of(L.lobbyId).filter((e) => e.id > baseline).length);

    // ---- the final status, the lobby, and the stream
    const done = await c.call('measurement.session_status', L.admin, { session_id: S });
    expect(done).toMatchObject({ state: 'completed', phase: 'completed', completed_speakers: 2, deadline_at: null });
    expect(done.speakers.map((s) => s.completed)).toEqual([true, true]);
    expect(done.recordings).toEqual([...recs(0), ...recs(1)]);
    const lobby = await c.call('lobby.get', L.admin, { lobby_id: L.lobbyId });
    expect(lobby).toMatchObject({ state: 'open', active_session_id: null });

    const allCore = c.of(L.lobbyId);
    await waitFor(async () => (await c.streamMessages(L.lobbyId)).length >= allCore.length, { message: 'stream catching up' });
    await expectStreamMatches(c, L, allCore);
  });

  it('session - aliases client_ready and speaker_finished are answered like ready and playback_complete', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 1 });
    const S = await createSession(c, L);
    const spk = L.speakers[0]!.device_id;
    const mic = L.microphones[0]!.device_id;
    await c.call('measurement.start_speaker', L.admin, { session_id: S });
    const ready = await c.call('measurement.client_ready', spk, { session_id: S });
    expect(ready).toMatchObject({ status: 'accepted', phase: 'waiting_ready' });
    // The alias and its target share the step: a ready after client_ready is a duplicate.
    expect(await c.call('measurement.ready', spk, { session_id: S })).toMatchObject({ status: 'duplicate' });
    expect(await c.call('measurement.ready', mic, { session_id: S })).toMatchObject({ phase: 'speaker_downloading' });
    expect(await c.call('measurement.client_ready', mic, { session_id: S })).toMatchObject({ status: 'duplicate' });
    await c.call('measurement.speaker_audio_ready', spk, { session_id: S });
    await c.call('measurement.recording_started', mic, { session_id: S });
    const finished = await c.call('measurement.speaker_finished', spk, { session_id: S });
    expect(finished).toMatchObject({ status: 'accepted', phase: 'uploading' });
    expect(await c.call('measurement.playback_complete', spk, { session_id: S })).toMatchObject({ status: 'duplicate' });
    const wrong = expectError(await c.send('measurement.speaker_finished', spk, { session_id: 'nope' }), 'session_not_found');
    expect(wrong.message).toBeTruthy();
  });

  it('session - one cycle end to end with devices that answer at once (figure for the lead)', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 3, microphones: 3 });
    const S = await createSession(c, L);
    const w = await LobbyWatcher.watch(c, L.lobbyId);
    try {
      const times: number[] = [];
      for (const i of [0, 1, 2]) {
        const t0 = performance.now();
        await runCycle(c, L, S, i, { watcher: w });
        times.push(performance.now() - t0);
      }
      await w.until('measurement.session_complete');
      console.log(
        `[figures] one replica, in-process: one full cycle (1 speaker x 3 microphones, devices answer each trigger at once) ` +
          `took ${times.map((t) => t.toFixed(1)).join(' / ')} ms (median ${median(times).toFixed(1)} ms)`,
      );
      const triggers = w.events.filter((e: Envelope) => e.event !== 'measurement.phase_update' && e.event !== 'lobby.updated');
      expect(triggers.length).toBe(3 * 6 + 1);
    } finally {
      w.close();
    }
  });
});
