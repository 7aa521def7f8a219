import { describe, expect, it } from 'vitest';
import { SessionStatus, events, type EventName } from '../../subjects/index.js';
import { ServiceError } from '../../src/errors.js';
import type { Session, Step, TransitionResult } from '../../src/measurement/model.js';
import {
  createSession,
  missingDevices,
  neededDevices,
  sessionDevices,
  statusOf,
  transition,
  wakeAt,
  type CreateContext,
  type CreateSessionInput,
  type LobbyView,
} from '../../src/measurement/transition.js';
import { TO_LOBBY } from '../helpers/audience.js';

// ---- fixtures -------------------------------------------------------------------------------

const ADMIN = 'admin-phone';
const T0 = Date.UTC(2026, 0, 1);
const BASE = 'https://lobby.example.test';
const DEFAULTS = { ready_ms: 30_000, audio_ms: 60_000, recording_start_ms: 15_000, playback_grace_ms: 30_000, upload_ms: 120_000 };

/**
 * The lobby's joined devices in join order (the "(all)" audience): the admin, who is no session
 * device, a bystander without a role, and the session devices, joined in an order unlike the
 * session lists. Devices a smaller session does not list are bystanders too.
 */
const JOINED = [ADMIN, 'mic-1', 'spk-0', 'bystander', 'mic-0', 'spk-1', 'mic-2', 'spk-2', 'mic-3'];

function ctx(now = T0): CreateContext {
  return {
    now,
    admin_device_id: ADMIN,
    lobby_device_ids: [...JOINED],
    public_base_url: BASE,
    presence_grace_ms: 10_000,
    defaults: DEFAULTS,
    default_signal_duration_seconds: 15,
  };
}

const spk = (i: number) => `spk-${i}`;
const mic = (i: number) => `mic-${i}`;

function input(nSpk = 2, nMic = 3, extra: Partial<CreateSessionInput> = {}): CreateSessionInput {
  return {
    session_id: 'sess/1 ä',
    device_id: ADMIN,
    job_id: 'job 7/x',
    lobby_id: 'lobby-1',
    speakers: Array.from({ length: nSpk }, (_, i) => ({ device_id: spk(i), slot_id: `S${i}`, slot_label: `Speaker ${i}` })),
    microphones: Array.from({ length: nMic }, (_, i) => ({ device_id: mic(i), slot_id: `M${i}` })),
    ...extra,
  };
}

function lobby(nSpk = 2, nMic = 3, extra: Partial<LobbyView> = {}): LobbyView {
  return {
    lobby_id: 'lobby-1',
    state: 'open',
    admin_device_id: ADMIN,
    active_session_id: null,
    participants: [
      { device_id: ADMIN, role: 'none', status: 'joined' },
      ...Array.from({ length: nSpk + 1 }, (_, i) => ({ device_id: spk(i), role: 'speaker' as const, status: 'joined' as const })),
      ...Array.from({ length: nMic + 1 }, (_, i) => ({ device_id: mic(i), role: 'microphone' as const, status: 'joined' as const })),
      { device_id: 'bystander', role: 'none', status: 'joined' },
      { device_id: 'gone-mic', role: 'microphone', status: 'left' },
    ],
    ...extra,
  };
}

function make(nSpk = 2, nMic = 3, extra: Partial<CreateSessionInput> = {}): Session {
  return createSession(input(nSpk, nMic, extra), lobby(nSpk, nMic), ctx()).session;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Apply a step to a frozen session: any mutation of the input throws. */
function apply(s: Session, step: Step, now = T0): TransitionResult {
  const r = transition(deepFreeze(s), step, ctx(now));
  for (const b of r.broadcasts) events[b.event].parse(b.data);
  return r;
}

/** Apply several steps, returning the last session and every broadcast. */
function run(s: Session, steps: Step[], now = T0): { session: Session; all: TransitionResult['broadcasts']; last: TransitionResult } {
  let last: TransitionResult = { session: s, broadcasts: [], status: 'accepted' };
  const all: TransitionResult['broadcasts'] = [];
  for (const st of steps) {
    last = apply(last.session, st, now);
    all.push(...last.broadcasts);
  }
  return { session: last.session, all, last };
}

function refusal(f: () => unknown): ServiceError {
  try {
    f();
  } catch (err) {
    if (err instanceof ServiceError) return err;
    throw err;
  }
  throw new Error('expected a ServiceError');
}

const names = (bs: { event: EventName }[]) => bs.map((b) => b.event);
const phasesOf = (bs: TransitionResult['broadcasts']) =>
  bs.filter((b) => b.event === 'measurement.phase_update').map((b) => b.data.phase);

const start: Step = { kind: 'start_speaker', device_id: ADMIN };
const ready = (d: string): Step => ({ kind: 'ready', device_id: d });
const audio = (d: string, audio_hash?: string): Step =>
  audio_hash === undefined ? { kind: 'speaker_audio_ready', device_id: d } : { kind: 'speaker_audio_ready', device_id: d, audio_hash };
const recStarted = (d: string): Step => ({ kind: 'recording_started', device_id: d });
const played = (d: string): Step => ({ kind: 'playback_complete', device_id: d });
const uploaded = (d: string, name = `${d}.wav`): Step => ({ kind: 'recording_uploaded', device_id: d, upload_name: name });

/** The steps of one whole cycle of speaker `i` with `nMic` microphones, from `start_speaker` on. */
function cycleSteps(i: number, nMic: number, upTo = 'uploads' as 'ready' | 'audio' | 'started' | 'played' | 'uploads'): Step[] {
  const mics = Array.from({ length: nMic }, (_, j) => mic(j));
  const steps: Step[] = [start, ready(spk(i)), ...mics.map(ready)];
  if (upTo === 'ready') return steps;
  steps.push(audio(spk(i), `hash-${i}`));
  if (upTo === 'audio') return steps;
  steps.push(...mics.map(recStarted));
  if (upTo === 'started') return steps;
  steps.push(played(spk(i)));
  if (upTo === 'played') return steps;
  return [...steps, ...mics.map((m) => uploaded(m, `${spk(i)}-${m}.wav`))];
}

// ---- createSession --------------------------------------------------------------------------

describe('createSession', () => {
  it('createSession - builds an idle session, resolves the timeouts and claims the lobby', () => {
    const r = createSession(input(), lobby(), ctx());
    expect(r.status).toBe('accepted');
    expect(r.broadcasts).toEqual([]);
    expect(r.lobby).toEqual({ state: 'measurement_running', active_session_id: 'sess/1 ä' });
    expect(r.session).toMatchObject({
      state: 'created',
      phase: 'idle',
      attempt: 0,
      current_speaker_index: 0,
      completed_speakers: [],
      recordings: [],
      audio_hash: null,
      phase_deadline_at: null,
      signal_duration_seconds: 15,
      timeouts: { ready_ms: 30_000, audio_ms: 60_000, recording_start_ms: 15_000, playback_ms: 45_000, upload_ms: 120_000 },
      disconnected: {},
      created_at: T0,
      updated_at: T0,
    });
    expect(r.session.speakers[0]).toEqual({ device_id: 'spk-0', slot_id: 'S0', slot_label: 'Speaker 0' });
    expect(r.session.microphones[0]).toEqual({ device_id: 'mic-0', slot_id: 'M0' });
  });

  it('createSession - per-session timeouts override the defaults; playback follows the signal', () => {
    const s = createSession(
      input(1, 1, { signal_duration_seconds: 20, timeouts: { ready_ms: 500, upload_ms: 900 } }),
      lobby(1, 1),
      ctx(),
    ).session;
    expect(s.timeouts).toEqual({ ready_ms: 500, audio_ms: 60_000, recording_start_ms: 15_000, playback_ms: 50_000, upload_ms: 900 });
    const s2 = createSession(input(1, 1, { timeouts: { playback_ms: 1234 } }), lobby(1, 1), ctx()).session;
    expect(s2.timeouts.playback_ms).toBe(1234);
  });

  it('createSession - only the admin may create a session (checked first)', () => {
    const e = refusal(() => createSession({ ...input(), device_id: 'spk-0' }, lobby(1, 1, { state: 'closed' }), ctx()));
    expect(e.code).toBe('forbidden');
  });

  it('createSession - a closed lobby is lobby_not_open with its state', () => {
    const e = refusal(() => createSession(input(), lobby(2, 3, { state: 'closed', active_session_id: 'x' }), ctx()));
    expect(e.code).toBe('lobby_not_open');
    expect(e.details).toEqual({ state: 'closed' });
  });

  it('createSession - a running lobby is accepted when it has no unfinished session', () => {
    expect(createSession(input(), lobby(2, 3, { state: 'measurement_running' }), ctx()).status).toBe('accepted');
  });

  it('createSession - an unfinished session is session_active with its id', () => {
    const e = refusal(() => createSession(input(), lobby(2, 3, { active_session_id: 'old' }), ctx()));
    expect(e.code).toBe('session_active');
    expect(e.details).toEqual({ session_id: 'old' });
  });

  it('createSession - a device listed twice is invalid_request with the path', () => {
    const i = input(1, 2);
    i.microphones[1] = { device_id: 'spk-0', slot_id: 'M9' };
    const e = refusal(() => createSession(i, lobby(1, 2), ctx()));
    expect(e.code).toBe('invalid_request');
    expect(e.details).toEqual({ issues: [{ path: 'microphones.1.device_id', message: expect.stringContaining('spk-0') }] });
  });

  it('createSession - a slot id used twice in one list is invalid_request; across lists it is fine', () => {
    const i = input(2, 1);
    i.speakers[1] = { device_id: 'spk-1', slot_id: 'S0' };
    const e = refusal(() => createSession(i, lobby(2, 1), ctx()));
    expect(e.code).toBe('invalid_request');
    expect(e.details).toEqual({ issues: [{ path: 'speakers.1.slot_id', message: expect.any(String) }] });
    const j = input(1, 1);
    j.microphones[0] = { device_id: 'mic-0', slot_id: 'S0' };
    expect(createSession(j, lobby(1, 1), ctx()).status).toBe('accepted');
  });

  it('createSession - counts are re-checked', () => {
    expect(refusal(() => createSession(input(0, 1), lobby(), ctx())).code).toBe('invalid_request');
    expect(refusal(() => createSession(input(17, 1), lobby(17, 1), ctx())).details).toEqual({
      issues: [{ path: 'speakers', message: expect.any(String) }],
    });
    expect(refusal(() => createSession(input(1, 65), lobby(1, 65), ctx())).code).toBe('invalid_request');
  });

  it('createSession - a device that is unknown or has left is participant_not_found', () => {
    const i = input(1, 1);
    i.microphones.push({ device_id: 'gone-mic', slot_id: 'M7' });
    const e = refusal(() => createSession(i, lobby(1, 1), ctx()));
    expect(e.code).toBe('participant_not_found');
    expect(e.message).toContain('gone-mic');
    i.microphones[1] = { device_id: 'stranger', slot_id: 'M7' };
    expect(refusal(() => createSession(i, lobby(1, 1), ctx())).message).toContain('stranger');
  });

  it('createSession - a device in the wrong list is role_mismatch with the roles', () => {
    const i = input(1, 1);
    i.speakers.push({ device_id: 'mic-1', slot_id: 'S1' });
    const e = refusal(() => createSession(i, lobby(1, 1), ctx()));
    expect(e.code).toBe('role_mismatch');
    expect(e.details).toEqual({ device_id: 'mic-1', role: 'microphone', expected: 'speaker' });
    const j = input(1, 1);
    j.microphones.push({ device_id: 'bystander', slot_id: 'M1' });
    expect(refusal(() => createSession(j, lobby(1, 1), ctx())).details).toEqual({
      device_id: 'bystander',
      role: 'none',
      expected: 'microphone',
    });
  });
});

// ---- the cycle ------------------------------------------------------------------------------

describe('transition - cycle', () => {
  it('transition - start_speaker starts speaker 0 with its deadline and tells every session device', () => {
    const r = apply(make(), start, T0 + 5);
    expect(r.status).toBe('accepted');
    expect(r.session).toMatchObject({
      state: 'running',
      phase: 'waiting_ready',
      attempt: 1,
      current_speaker_index: 0,
      phase_deadline_at: T0 + 5 + 30_000,
      updated_at: T0 + 5,
    });
    expect(names(r.broadcasts)).toEqual(['measurement.start_measurement', 'measurement.phase_update']);
    const all = ['spk-0', 'spk-1', 'mic-0', 'mic-1', 'mic-2'];
    expect(r.broadcasts.map((b) => b.targets)).toEqual([all, all]);
    expect(r.broadcasts[0]?.data).toEqual({
      session_id: 'sess/1 ä',
      job_id: 'job 7/x',
      speaker_device_id: 'spk-0',
      speaker_slot_id: 'S0',
      // The v1 names the app reads.
      current_speaker_slot_id: 'S0',
      current_speaker_slot_label: 'Speaker 0',
      current_speaker_index: 0,
      total_speakers: 2,
      total_microphones: 3,
      attempt: 1,
    });
    expect(r.broadcasts[1]?.data).toEqual({
      session_id: 'sess/1 ä',
      job_id: 'job 7/x',
      phase: 'waiting_ready',
      phase_description: 'Waiting for the speaker and every microphone to be ready',
      current_speaker_index: 0,
      total_speakers: 2,
      completed_speakers: 0,
    });
  });

  it('transition - a partial ready is recorded without broadcasts or a new deadline', () => {
    const s = apply(make(), start).session;
    const r = apply(s, ready('mic-1'), T0 + 100);
    expect(r.status).toBe('accepted');
    expect(r.broadcasts).toEqual([]);
    expect(r.session.cycle.ready).toEqual(['mic-1']);
    expect(r.session.phase_deadline_at).toBe(T0 + 30_000);
    expect(r.session.updated_at).toBe(T0 + 100);
    expect(missingDevices(r.session)).toEqual(['spk-0', 'mic-0', 'mic-2']);
  });

  it('transition - when all are ready the speaker alone is asked to download', () => {
    const { session, last } = run(make(), cycleSteps(0, 3, 'ready'), T0 + 7);
    expect(session.phase).toBe('speaker_downloading');
    expect(session.phase_deadline_at).toBe(T0 + 7 + 60_000);
    expect(names(last.broadcasts)).toEqual(['measurement.request_audio', 'measurement.phase_update']);
    expect(last.broadcasts[0]).toEqual({
      event: 'measurement.request_audio',
      data: { session_id: 'sess/1 ä', audio_url: `${BASE}/v1/measurement/audio?session_id=sess%2F1%20%C3%A4` },
      targets: ['spk-0'],
    });
  });

  it('transition - a duplicate ready changes nothing', () => {
    const s = run(make(), [start, ready('mic-0')]).session;
    const r = apply(s, ready('mic-0'), T0 + 50);
    expect(r).toEqual({ session: s, broadcasts: [], status: 'duplicate' });
    expect(r.session).toBe(s);
    // Still a duplicate after the phase has moved on.
    const later = run(make(), cycleSteps(0, 3, 'audio')).session;
    expect(apply(later, ready('mic-2')).status).toBe('duplicate');
    expect(apply(later, ready('spk-0')).status).toBe('duplicate');
  });

  it('transition - speaker_audio_ready stores the hash and starts the microphones', () => {
    const { session, last } = run(make(), cycleSteps(0, 3, 'audio'), T0 + 9);
    expect(session.phase).toBe('starting_recording');
    expect(session.audio_hash).toBe('hash-0');
    expect(session.phase_deadline_at).toBe(T0 + 9 + 15_000);
    expect(last.broadcasts[0]).toEqual({
      event: 'measurement.start_recording',
      data: { session_id: 'sess/1 ä', speaker_slot_id: 'S0', expected_duration_seconds: 15 },
      targets: ['mic-0', 'mic-1', 'mic-2'],
    });
    expect(phasesOf(last.broadcasts)).toEqual(['starting_recording']);
    // Without a hash the previous one is kept.
    const s2 = run(make(), [...cycleSteps(0, 3, 'ready'), audio('spk-0')]).session;
    expect(s2.audio_hash).toBeNull();
  });

  it('transition - playback starts only after every microphone records', () => {
    const s = run(make(), cycleSteps(0, 3, 'audio')).session;
    const a = apply(s, recStarted('mic-2'));
    const b = apply(a.session, recStarted('mic-0'));
    expect([a.broadcasts, b.broadcasts]).toEqual([[], []]);
    expect(missingDevices(b.session)).toEqual(['mic-1']);
    const c = apply(b.session, recStarted('mic-1'), T0 + 3);
    expect(c.session.phase).toBe('playing');
    expect(c.session.phase_deadline_at).toBe(T0 + 3 + 45_000);
    expect(c.broadcasts[0]).toEqual({ event: 'measurement.start_playback', data: { session_id: 'sess/1 ä' }, targets: ['spk-0'] });
    expect(phasesOf(c.broadcasts)).toEqual(['playing']);
  });

  it('transition - playback_complete tells the microphones where to upload', () => {
    const { session, last } = run(make(), cycleSteps(0, 3, 'played'), T0 + 4);
    expect(session.phase).toBe('uploading');
    expect(session.phase_deadline_at).toBe(T0 + 4 + 120_000);
    expect(last.broadcasts[0]).toEqual({
      event: 'measurement.stop_recording',
      data: { session_id: 'sess/1 ä', job_id: 'job 7/x', speaker_slot_id: 'S0', upload_endpoint: `${BASE}/v1/jobs/job%207%2Fx/uploads/` },
      targets: ['mic-0', 'mic-1', 'mic-2'],
    });
  });

  it('transition - the last upload completes the speaker with recordings in microphone order', () => {
    const s = run(make(), cycleSteps(0, 3, 'played')).session;
    const { session, all } = run(s, [uploaded('mic-2', 'c'), uploaded('mic-0', 'a'), uploaded('mic-1', 'b')], T0 + 11);
    expect(session).toMatchObject({ state: 'running', phase: 'speaker_complete', phase_deadline_at: null, completed_speakers: ['S0'] });
    expect(session.recordings.map((r) => r.upload_name)).toEqual(['a', 'b', 'c']);
    expect(names(all)).toEqual(['measurement.speaker_complete', 'measurement.phase_update']);
    expect(all[0]?.data).toEqual({
      session_id: 'sess/1 ä',
      completed_speaker_slot_id: 'S0',
      remaining_speakers: 1,
      recordings: session.recordings,
    });
    expect(all[0]?.targets).toEqual(JOINED);
    expect(all[1]?.targets).toEqual(sessionDevices(session));
    expect(all[1]?.data).toMatchObject({ phase: 'speaker_complete', completed_speakers: 1 });
    expect(session.recordings[0]).toEqual({
      speaker_slot_id: 'S0',
      speaker_device_id: 'spk-0',
      microphone_slot_id: 'M0',
      microphone_device_id: 'mic-0',
      upload_name: 'a',
    });
  });

  it('transition - a full 2-speaker x 3-microphone session broadcasts the exact sequence', () => {
    const { session, all, last } = run(make(), [...cycleSteps(0, 3), ...cycleSteps(1, 3)]);
    const cycle = [
      'measurement.start_measurement',
      'measurement.phase_update',
      'measurement.request_audio',
      'measurement.phase_update',
      'measurement.start_recording',
      'measurement.phase_update',
      'measurement.start_playback',
      'measurement.phase_update',
      'measurement.stop_recording',
      'measurement.phase_update',
      'measurement.speaker_complete',
      'measurement.phase_update',
    ];
    expect(names(all)).toEqual([...cycle, ...cycle, 'measurement.session_complete', 'measurement.phase_update']);
    expect(phasesOf(all).slice(-3)).toEqual(['uploading', 'speaker_complete', 'completed']);
    expect(session).toMatchObject({ state: 'completed', phase: 'completed', phase_deadline_at: null, current_speaker_index: 1 });
    expect(session.completed_speakers).toEqual(['S0', 'S1']);
    expect(session.recordings).toHaveLength(6);
    expect(last.lobby).toEqual({ state: 'open', active_session_id: null });
    expect(names(last.broadcasts)).toEqual([
      'measurement.speaker_complete',
      'measurement.phase_update',
      'measurement.session_complete',
      'measurement.phase_update',
    ]);
    expect(last.broadcasts[1]?.data).toMatchObject({ phase: 'speaker_complete', completed_speakers: 2 });
    expect(last.broadcasts[2]?.data).toEqual({
      session_id: 'sess/1 ä',
      job_id: 'job 7/x',
      completed_speakers: ['S0', 'S1'],
      recordings: session.recordings,
      audio_hash: 'hash-1',
    });
    expect(last.broadcasts[0]?.data).toMatchObject({ completed_speaker_slot_id: 'S1', remaining_speakers: 0 });
    expect((last.broadcasts[0]?.data.recordings as unknown[]).length).toBe(3);
    for (const b of all) {
      if (TO_LOBBY.has(b.event)) expect(b.targets, b.event).toEqual(JOINED);
      else expect(b.targets.every((t) => sessionDevices(session).includes(t)), b.event).toBe(true);
    }
    expect(last.broadcasts.map((b) => b.targets)).toEqual([JOINED, sessionDevices(session), JOINED, sessionDevices(session)]);
  });

  it('transition - start_speaker after speaker_complete starts the next speaker with a fresh cycle', () => {
    const s = run(make(), cycleSteps(0, 3)).session;
    const r = apply(s, start, T0 + 1);
    expect(r.session).toMatchObject({ current_speaker_index: 1, attempt: 1, phase: 'waiting_ready' });
    expect(r.session.cycle).toEqual({ ready: [], audio_ready: false, recording_started: [], playback_complete: false, uploaded: {} });
    expect(r.broadcasts[0]?.data).toMatchObject({ speaker_slot_id: 'S1', speaker_device_id: 'spk-1', current_speaker_index: 1 });
  });
});

// ---- auto-advance ---------------------------------------------------------------------------

describe('transition - auto-advance', () => {
  const tick: Step = { kind: 'tick' };

  it('createSession - auto-advance is on by default with the configured delay; both may be given', () => {
    expect(make()).toMatchObject({ auto_advance: true, next_speaker_delay_ms: 1_000, next_speaker_at: null });
    const c = { ...ctx(), default_next_speaker_delay_ms: 2_500 };
    expect(createSession(input(), lobby(), c).session.next_speaker_delay_ms).toBe(2_500);
    const off = createSession(input(2, 3, { auto_advance: false, next_speaker_delay_ms: 0 }), lobby(), c).session;
    expect(off).toMatchObject({ auto_advance: false, next_speaker_delay_ms: 0 });
  });

  it('transition - after a speaker completes, the next one starts by itself once the delay has passed', () => {
    const done = run(make(), cycleSteps(0, 3), T0).session;
    expect(done).toMatchObject({ phase: 'speaker_complete', next_speaker_at: T0 + 1_000, phase_deadline_at: null });
    // Stored as the session's wake time, like a deadline.
    expect(wakeAt(done, ctx())).toBe(T0 + 1_000);
    expect(apply(done, tick, T0 + 999).status).toBe('not_required');
    const r = apply(done, tick, T0 + 1_000);
    expect(r.status).toBe('accepted');
    expect(r.session).toMatchObject({ phase: 'waiting_ready', current_speaker_index: 1, attempt: 1, next_speaker_at: null });
    expect(names(r.broadcasts)).toEqual(['measurement.start_measurement', 'measurement.phase_update']);
    expect(r.broadcasts[0]?.data).toMatchObject({ speaker_device_id: 'spk-1', current_speaker_slot_id: 'S1', current_speaker_index: 1 });
    expect(wakeAt(r.session, ctx())).toBe(T0 + 1_000 + 30_000);
    // Exactly once: a second tick (another replica, a retry) finds the cycle running.
    expect(apply(r.session, tick, T0 + 1_001).status).toBe('not_required');
    // A v1-style admin sending start_speaker now gets a duplicate and changes nothing.
    expect(apply(r.session, start, T0 + 1_002)).toMatchObject({ status: 'duplicate', broadcasts: [] });
  });

  it('transition - an admin start_speaker before the delay starts the next speaker once; the timer is dropped', () => {
    const done = run(make(), cycleSteps(0, 3), T0).session;
    const r = apply(done, start, T0 + 500);
    expect(r.session).toMatchObject({ phase: 'waiting_ready', current_speaker_index: 1, next_speaker_at: null });
    expect(apply(r.session, tick, T0 + 1_000).status).toBe('not_required');
    expect(apply(r.session, start, T0 + 1_001).status).toBe('duplicate');
  });

  it('transition - a whole 3-speaker session completes with a single start_speaker', () => {
    let s = make(3, 2);
    let now = T0;
    for (let i = 0; i < 3; i++) {
      const steps = cycleSteps(i, 2).filter((st) => i === 0 || st !== start);
      s = run(s, steps, now).session;
      if (i < 2) {
        expect(s.phase).toBe('speaker_complete');
        now = s.next_speaker_at!;
        s = apply(s, tick, now).session;
      }
    }
    expect(s).toMatchObject({ state: 'completed', phase: 'completed', completed_speakers: ['S0', 'S1', 'S2'], next_speaker_at: null });
    expect(wakeAt(s, ctx())).toBeNull();
  });

  it('transition - with no delay the completing upload itself starts the next speaker', () => {
    const s = make(2, 3, { next_speaker_delay_ms: 0 });
    const r = run(s, cycleSteps(0, 3)).last;
    expect(names(r.broadcasts)).toEqual([
      'measurement.speaker_complete',
      'measurement.phase_update',
      'measurement.start_measurement',
      'measurement.phase_update',
    ]);
    expect(phasesOf(r.broadcasts)).toEqual(['speaker_complete', 'waiting_ready']);
    expect(r.session).toMatchObject({ phase: 'waiting_ready', current_speaker_index: 1 });
  });

  it('transition - without auto-advance, or after the last speaker, nothing is scheduled', () => {
    const off = run(make(2, 3, { auto_advance: false }), cycleSteps(0, 3)).session;
    expect(off).toMatchObject({ phase: 'speaker_complete', next_speaker_at: null });
    expect(wakeAt(off, ctx())).toBeNull();
    expect(apply(off, tick, T0 + 1e9).status).toBe('not_required');
    // A session stored before auto-advance existed waits for the admin, as it did.
    const { auto_advance: _a, next_speaker_delay_ms: _d, next_speaker_at: _n, ...legacy } = make();
    const old = run(legacy as Session, cycleSteps(0, 3)).session;
    expect(old.phase).toBe('speaker_complete');
    expect(wakeAt(old, ctx())).toBeNull();
  });

  it('transition - a failed cycle is not retried automatically', () => {
    const failed = apply(run(make(), [start]).session, tick, T0 + 30_000).session;
    expect(failed.phase).toBe('failed');
    expect(wakeAt(failed, ctx())).toBeNull();
    expect(apply(failed, tick, T0 + 1e9).status).toBe('not_required');
  });
});

// ---- refusals and check order ---------------------------------------------------------------

describe('transition - refusals', () => {
  const running = () => apply(make(), start).session;

  it('transition - a device outside the session is forbidden, before session_finished', () => {
    expect(refusal(() => apply(running(), ready('bystander'))).code).toBe('forbidden');
    expect(refusal(() => apply(running(), ready(ADMIN))).code).toBe('forbidden');
    const cancelled = apply(running(), { kind: 'cancel', device_id: ADMIN }).session;
    expect(refusal(() => apply(cancelled, ready('bystander'))).code).toBe('forbidden');
  });

  it('transition - a step on a finished session is session_finished with its state', () => {
    const cancelled = apply(running(), { kind: 'cancel', device_id: ADMIN }).session;
    const e = refusal(() => apply(cancelled, ready('mic-0')));
    expect(e.code).toBe('session_finished');
    expect(e.details).toEqual({ state: 'cancelled' });
    const done = run(make(1, 1), cycleSteps(0, 1)).session;
    const other = run(make(2, 1), [...cycleSteps(0, 1), ...cycleSteps(1, 1)]).session;
    // spk-0's steps belong to an earlier cycle, not the last one.
    expect(refusal(() => apply(other, ready('spk-0'))).details).toEqual({ state: 'completed' });
    expect(refusal(() => apply(other, played('spk-0'))).details).toEqual({ state: 'completed' });
    expect(refusal(() => apply(done, start)).code).toBe('session_finished');
    expect(refusal(() => apply(done, { kind: 'cancel', device_id: ADMIN })).code).toBe('session_finished');
    expect(refusal(() => apply(done, { kind: 'error', device_id: 'mic-0', error_message: 'x' })).code).toBe('session_finished');
    // session_finished comes before the list check.
    expect(refusal(() => apply(done, audio('mic-0'))).code).toBe('session_finished');
  });

  it('transition - a step its device already did in the last cycle is a duplicate on a finished session', () => {
    // The final upload's reply was lost and the microphone retries it (no Idempotency-Key).
    const done = run(make(2, 2), [...cycleSteps(0, 2), ...cycleSteps(1, 2)]).session;
    expect(done.state).toBe('completed');
    expect(apply(done, uploaded('mic-1', 'spk-1-mic-1.wav'), T0 + 99)).toEqual({ session: done, broadcasts: [], status: 'duplicate' });
    // Every step of the last cycle, by the device that took it (the upload name is not compared).
    for (const st of [uploaded('mic-0', 'other.wav'), recStarted('mic-1'), ready('mic-0'), ready('spk-1'), audio('spk-1'), played('spk-1')]) {
      expect(apply(done, st).status, `${st.kind} from ${'device_id' in st ? st.device_id : ''}`).toBe('duplicate');
    }
    // Anything else stays session_finished: an earlier cycle's speaker, the wrong list, errors.
    for (const st of [ready('spk-0'), audio('spk-0'), played('spk-0'), audio('mic-0'), played('mic-1')]) {
      expect(refusal(() => apply(done, st)).details).toEqual({ state: 'completed' });
    }
    expect(refusal(() => apply(done, { kind: 'error', device_id: 'spk-1', error_message: 'late' })).code).toBe('session_finished');

    // Cancelled mid-upload: what was done in that cycle is a duplicate, what was not is finished.
    const mid = run(make(1, 2), [...cycleSteps(0, 2, 'played'), uploaded('mic-0')]).session;
    const cancelled = apply(mid, { kind: 'cancel', device_id: ADMIN }).session;
    expect(apply(cancelled, uploaded('mic-0'))).toEqual({ session: cancelled, broadcasts: [], status: 'duplicate' });
    expect(apply(cancelled, played('spk-0')).status).toBe('duplicate');
    expect(refusal(() => apply(cancelled, uploaded('mic-1'))).details).toEqual({ state: 'cancelled' });
    expect(refusal(() => apply(cancelled, { kind: 'error', device_id: 'mic-0', error_message: 'x' })).code).toBe('session_finished');
    // Cancelled before any start: nothing was done.
    const never = apply(make(), { kind: 'cancel', device_id: ADMIN }).session;
    expect(refusal(() => apply(never, ready('spk-0'))).code).toBe('session_finished');
    // Outsiders are still forbidden first.
    expect(refusal(() => apply(done, uploaded('bystander'))).code).toBe('forbidden');
  });

  it('transition - a step from the wrong list is forbidden', () => {
    const s = run(make(), cycleSteps(0, 3, 'ready')).session;
    expect(refusal(() => apply(s, audio('mic-0'))).code).toBe('forbidden');
    expect(refusal(() => apply(s, played('mic-0'))).code).toBe('forbidden');
    expect(refusal(() => apply(s, recStarted('spk-0'))).code).toBe('forbidden');
    expect(refusal(() => apply(s, uploaded('spk-0'))).code).toBe('forbidden');
    // Even from a speaker the cycle does not need: the list check comes first.
    expect(refusal(() => apply(s, recStarted('spk-1'))).code).toBe('forbidden');
  });

  it('transition - a speaker the cycle does not need gets not_required', () => {
    const s = running();
    expect(apply(s, ready('spk-1'))).toEqual({ session: s, broadcasts: [], status: 'not_required' });
    expect(apply(s, audio('spk-1')).status).toBe('not_required');
    expect(apply(s, { kind: 'error', device_id: 'spk-1', error_message: 'x' }).status).toBe('not_required');
  });

  it('transition - device steps before the first start are wrong_phase', () => {
    const e = refusal(() => apply(make(), ready('spk-0')));
    expect(e.code).toBe('wrong_phase');
    expect(e.details).toEqual({ phase: 'idle', expected: ['measurement.start_speaker', 'measurement.cancel_session'] });
    expect(refusal(() => apply(make(), ready('spk-1'))).code).toBe('wrong_phase');
    expect(refusal(() => apply(make(), { kind: 'error', device_id: 'mic-0', error_message: 'x' })).code).toBe('wrong_phase');
  });

  it('transition - an out-of-order step is wrong_phase with what the phase expects', () => {
    const s = running();
    const e = refusal(() => apply(s, audio('spk-0')));
    expect(e.code).toBe('wrong_phase');
    expect(e.details).toEqual({ phase: 'waiting_ready', expected: ['measurement.ready'] });
    expect(refusal(() => apply(s, recStarted('mic-0'))).details).toEqual({ phase: 'waiting_ready', expected: ['measurement.ready'] });
    const playing = run(make(), cycleSteps(0, 3, 'started')).session;
    expect(refusal(() => apply(playing, uploaded('mic-0'))).details).toEqual({
      phase: 'playing',
      expected: ['measurement.playback_complete'],
    });
    const done = run(make(), cycleSteps(0, 3)).session;
    expect(refusal(() => apply(done, { kind: 'error', device_id: 'mic-0', error_message: 'x' })).details).toEqual({
      phase: 'speaker_complete',
      expected: ['measurement.start_speaker', 'measurement.cancel_session'],
    });
  });

  it('transition - admin steps from anyone else are forbidden', () => {
    for (const step of [
      { kind: 'start_speaker', device_id: 'spk-0' },
      { kind: 'cancel', device_id: 'mic-0' },
      { kind: 'broadcast_results', device_id: 'bystander', job_id: 'job 7/x', results: {} },
    ] as Step[]) {
      expect(refusal(() => apply(make(), step)).code).toBe('forbidden');
    }
  });

  it('transition - start_speaker during a running cycle is a duplicate', () => {
    for (const upTo of ['ready', 'audio', 'started', 'played'] as const) {
      const s = run(make(), cycleSteps(0, 3, upTo)).session;
      expect(apply(s, start, T0 + 99)).toEqual({ session: s, broadcasts: [], status: 'duplicate' });
    }
    const s = running();
    expect(apply(s, start).status).toBe('duplicate');
  });
});

// ---- cancel, results, errors ----------------------------------------------------------------

describe('transition - cancel, results and errors', () => {
  it('transition - cancel ends the session, tells every device and frees the lobby', () => {
    const r = apply(run(make(), cycleSteps(0, 3, 'audio')).session, { kind: 'cancel', device_id: ADMIN }, T0 + 8);
    expect(r.session).toMatchObject({ state: 'cancelled', phase: 'cancelled', phase_deadline_at: null, updated_at: T0 + 8 });
    expect(names(r.broadcasts)).toEqual(['measurement.session_cancelled', 'measurement.phase_update']);
    expect(r.broadcasts[0]?.data).toEqual({ session_id: 'sess/1 ä', reason: 'cancelled by admin' });
    expect(r.broadcasts[0]?.targets).toEqual(JOINED);
    expect(r.broadcasts[1]?.targets).toEqual(sessionDevices(r.session));
    expect(r.broadcasts[1]?.data).toMatchObject({ phase: 'cancelled' });
    expect(r.lobby).toEqual({ state: 'open', active_session_id: null });
    const idle = apply(make(), { kind: 'cancel', device_id: ADMIN, reason: 'room too loud' });
    expect(idle.broadcasts[0]?.data).toEqual({ session_id: 'sess/1 ä', reason: 'room too loud' });
    expect(idle.session.state).toBe('cancelled');
  });

  it('transition - cancelling twice is a duplicate', () => {
    const s = apply(make(), { kind: 'cancel', device_id: ADMIN }).session;
    expect(apply(s, { kind: 'cancel', device_id: ADMIN })).toEqual({ session: s, broadcasts: [], status: 'duplicate' });
  });

  it('transition - lobby_closed cancels an unfinished session and ignores a finished one', () => {
    const r = apply(apply(make(), start).session, { kind: 'lobby_closed', reason: 'lobby closed' });
    expect(r.session).toMatchObject({ state: 'cancelled', phase: 'cancelled', phase_deadline_at: null });
    expect(names(r.broadcasts)).toEqual(['measurement.session_cancelled', 'measurement.phase_update']);
    expect(r.broadcasts[0]?.data).toEqual({ session_id: 'sess/1 ä', reason: 'lobby closed' });
    expect(r.broadcasts.map((b) => b.targets)).toEqual([JOINED, sessionDevices(r.session)]);
    // The lobby is closing: no effect that would set it back to open.
    expect(r.lobby).toBeUndefined();
    expect(apply(r.session, { kind: 'lobby_closed', reason: 'again' })).toEqual({ session: r.session, broadcasts: [], status: 'not_required' });
  });

  it('transition - broadcast_results goes to every joined device of the lobby, even after completion', () => {
    const done = run(make(1, 2), cycleSteps(0, 2)).session;
    const r = apply(done, { kind: 'broadcast_results', device_id: ADMIN, job_id: 'job 7/x', results: { rt60: 0.4 } }, T0 + 1e6);
    expect(r.status).toBe('accepted');
    expect(r.session).toEqual(done);
    expect(r.broadcasts).toEqual([
      {
        event: 'measurement.analysis_results',
        data: { session_id: 'sess/1 ä', job_id: 'job 7/x', results: { rt60: 0.4 } },
        targets: JOINED,
      },
    ]);
  });

  it('transition - broadcast_results with another job_id is invalid_request', () => {
    const e = refusal(() => apply(make(), { kind: 'broadcast_results', device_id: ADMIN, job_id: 'other', results: {} }));
    expect(e.code).toBe('invalid_request');
    expect(e.details).toEqual({ issues: [{ path: 'job_id', message: expect.any(String) }] });
  });

  it('transition - a device error fails the cycle; the session keeps running', () => {
    const s = run(make(), cycleSteps(0, 3, 'audio')).session;
    const r = apply(s, { kind: 'error', device_id: 'mic-1', error_message: 'mic busy' }, T0 + 2);
    expect(r.session).toMatchObject({ state: 'running', phase: 'failed', phase_deadline_at: null });
    expect(names(r.broadcasts)).toEqual(['measurement.error', 'measurement.phase_update']);
    expect(r.broadcasts[0]?.data).toEqual({
      session_id: 'sess/1 ä',
      error_device_id: 'mic-1',
      error_message: 'mic busy',
      error_code: 'device_error',
      phase: 'starting_recording',
    });
    expect(r.broadcasts[0]?.targets).toEqual(JOINED);
    expect(r.broadcasts[1]?.targets).toEqual(sessionDevices(s));
    expect(r.broadcasts[1]?.data).toMatchObject({ phase: 'failed' });
    const custom = apply(s, { kind: 'error', device_id: 'spk-0', error_message: 'x', error_code: 'audio_decode' });
    expect(custom.broadcasts[0]?.data.error_code).toBe('audio_decode');
    // A second error in the failed cycle is a duplicate.
    expect(apply(r.session, { kind: 'error', device_id: 'mic-0', error_message: 'y' }).status).toBe('duplicate');
    // Steps the failed cycle never got are out of phase now.
    expect(refusal(() => apply(r.session, recStarted('mic-0'))).details).toEqual({
      phase: 'failed',
      expected: ['measurement.start_speaker', 'measurement.cancel_session'],
    });
  });

  it('transition - a retry runs the same speaker again with a fresh cycle', () => {
    const s = run(make(), [...cycleSteps(0, 3), ...cycleSteps(1, 3, 'played'), uploaded('mic-0')]).session;
    const failed = apply(s, { kind: 'error', device_id: 'mic-2', error_message: 'disk full' }).session;
    expect(failed.recordings).toHaveLength(3);
    const r = apply(failed, start, T0 + 1);
    expect(r.session).toMatchObject({ phase: 'waiting_ready', attempt: 2, current_speaker_index: 1 });
    expect(r.session.cycle.uploaded).toEqual({});
    expect(r.broadcasts[0]?.data).toMatchObject({ attempt: 2, speaker_slot_id: 'S1' });
    const retry = run(r.session, cycleSteps(1, 3).slice(1)).session;
    expect(retry.state).toBe('completed');
    expect(retry.recordings).toHaveLength(6);
    expect(retry.recordings.filter((x) => x.speaker_slot_id === 'S1')).toHaveLength(3);
    expect(retry.completed_speakers).toEqual(['S0', 'S1']);
  });
});

// ---- clock and presence ---------------------------------------------------------------------

describe('transition - deadlines and presence', () => {
  it('transition - a tick before the deadline changes nothing', () => {
    const s = apply(make(), start).session;
    expect(apply(s, { kind: 'tick' }, T0 + 29_999)).toEqual({ session: s, broadcasts: [], status: 'not_required' });
    expect(apply(make(), { kind: 'tick' }, T0 + 1e9).status).toBe('not_required');
  });

  it('transition - a passed deadline fails the cycle with the missing devices', () => {
    const s = run(make(), [start, ready('mic-1')]).session;
    const r = apply(s, { kind: 'tick' }, T0 + 30_000);
    expect(r.session).toMatchObject({ phase: 'failed', state: 'running', phase_deadline_at: null, updated_at: T0 + 30_000 });
    expect(r.broadcasts[0]?.data).toEqual({
      session_id: 'sess/1 ä',
      error_device_id: null,
      error_message: expect.any(String),
      error_code: 'timeout',
      phase: 'waiting_ready',
      missing_device_ids: ['spk-0', 'mic-0', 'mic-2'],
    });
    expect(phasesOf(r.broadcasts)).toEqual(['failed']);
    expect(r.broadcasts.map((b) => b.targets)).toEqual([JOINED, sessionDevices(s)]);
    expect(apply(r.session, { kind: 'tick' }, T0 + 1e9).status).toBe('not_required');
  });

  it('transition - each phase reports the devices it still waits for', () => {
    const missingAtTimeout = (steps: Step[], deadline: number) =>
      apply(run(make(), steps).session, { kind: 'tick' }, T0 + deadline).broadcasts[0]?.data.missing_device_ids;
    expect(missingAtTimeout(cycleSteps(0, 3, 'ready'), 60_000)).toEqual(['spk-0']);
    expect(missingAtTimeout([...cycleSteps(0, 3, 'audio'), recStarted('mic-1')], 15_000)).toEqual(['mic-0', 'mic-2']);
    expect(missingAtTimeout(cycleSteps(0, 3, 'started'), 45_000)).toEqual(['spk-0']);
    expect(missingAtTimeout([...cycleSteps(0, 3, 'played'), uploaded('mic-0')], 120_000)).toEqual(['mic-1', 'mic-2']);
  });

  it('transition - presence records the first disconnect and forgets it on reconnect', () => {
    const s = apply(make(), start).session;
    const down = apply(s, { kind: 'presence', device_id: 'mic-0', connected: false }, T0 + 10);
    expect(down).toMatchObject({ status: 'accepted', broadcasts: [] });
    expect(down.session.disconnected).toEqual({ 'mic-0': T0 + 10 });
    const again = apply(down.session, { kind: 'presence', device_id: 'mic-0', connected: false }, T0 + 20);
    expect(again).toEqual({ session: down.session, broadcasts: [], status: 'not_required' });
    const up = apply(down.session, { kind: 'presence', device_id: 'mic-0', connected: true }, T0 + 30);
    expect(up.status).toBe('accepted');
    expect(up.session.disconnected).toEqual({});
    expect(apply(up.session, { kind: 'presence', device_id: 'mic-0', connected: true }).status).toBe('not_required');
    expect(apply(s, { kind: 'presence', device_id: 'bystander', connected: false }).status).toBe('not_required');
    const cancelled = apply(s, { kind: 'cancel', device_id: ADMIN }).session;
    expect(apply(cancelled, { kind: 'presence', device_id: 'mic-0', connected: false }).status).toBe('not_required');
  });

  it('transition - a needed device disconnected beyond the grace period fails the cycle', () => {
    const s = run(make(), [start, { kind: 'presence', device_id: 'mic-2', connected: false }], T0 + 1000).session;
    expect(wakeAt(s, ctx())).toBe(T0 + 11_000);
    expect(apply(s, { kind: 'tick' }, T0 + 10_999).status).toBe('not_required');
    const r = apply(s, { kind: 'tick' }, T0 + 11_000);
    expect(r.session.phase).toBe('failed');
    expect(r.broadcasts[0]?.data).toMatchObject({
      error_code: 'device_disconnected',
      // The device that dropped off (the app shows who).
      error_device_id: 'mic-2',
      phase: 'waiting_ready',
      missing_device_ids: ['mic-2'],
    });
  });

  it('transition - a disconnected device the cycle does not need is not waited for', () => {
    const s = run(make(), [start, { kind: 'presence', device_id: 'spk-1', connected: false }]).session;
    expect(wakeAt(s, ctx())).toBe(T0 + 30_000);
    expect(apply(s, { kind: 'tick' }, T0 + 20_000).status).toBe('not_required');
  });

  it('transition - when deadline and grace have both passed, the earlier is the cause', () => {
    const s = run(make(), [start, { kind: 'presence', device_id: 'mic-2', connected: false }], T0 + 25_000).session;
    // grace ends at 35_000, deadline at 55_000
    expect(apply(s, { kind: 'tick' }, T0 + 1e6).broadcasts[0]?.data.error_code).toBe('device_disconnected');
    const t = run(make(), [start], T0).session;
    const u = apply(t, { kind: 'presence', device_id: 'mic-2', connected: false }, T0 + 25_000).session;
    // deadline at 30_000, grace ends at 35_000
    expect(apply(u, { kind: 'tick' }, T0 + 1e6).broadcasts[0]?.data.error_code).toBe('timeout');
  });

  it('transition - a needed device leaving fails the cycle at once', () => {
    const s = run(make(), cycleSteps(0, 3, 'played')).session;
    const r = apply(s, { kind: 'participant_left', device_id: 'mic-1' }, T0 + 3);
    expect(r.session.phase).toBe('failed');
    expect(r.broadcasts[0]?.data).toMatchObject({
      error_code: 'participant_left',
      error_device_id: 'mic-1',
      phase: 'uploading',
      missing_device_ids: ['mic-1'],
    });
    expect(r.broadcasts[0]?.targets).toEqual(JOINED);
    expect(apply(s, { kind: 'participant_left', device_id: 'spk-1' }).status).toBe('not_required');
    expect(apply(make(), { kind: 'participant_left', device_id: 'mic-1' }).status).toBe('not_required');
    expect(apply(r.session, { kind: 'participant_left', device_id: 'mic-0' }).status).toBe('not_required');
  });
});

// ---- audiences ------------------------------------------------------------------------------

describe('transition - audiences', () => {
  it('transition - "(all)" events go to the lobby\'s joined devices at the time of the step, in join order', () => {
    const s = run(make(1, 1), cycleSteps(0, 1, 'played')).session;
    // Since the session started, the bystander left and a newcomer joined.
    const now = [ADMIN, 'newcomer', 'mic-0', 'spk-0'];
    const r = transition(deepFreeze(s), uploaded('mic-0'), { ...ctx(T0 + 5), lobby_device_ids: now });
    expect(r.broadcasts.map((b) => [b.event, b.targets])).toEqual([
      ['measurement.speaker_complete', now],
      ['measurement.phase_update', ['spk-0', 'mic-0']],
      ['measurement.session_complete', now],
      ['measurement.phase_update', ['spk-0', 'mic-0']],
    ]);
    // Every broadcast owns its targets (none is the context's array or another broadcast's).
    expect(r.broadcasts[0]?.targets).not.toBe(now);
    expect(r.broadcasts[0]?.targets).not.toBe(r.broadcasts[2]?.targets);
    const results = transition(r.session, { kind: 'broadcast_results', device_id: ADMIN, job_id: 'job 7/x', results: {} }, {
      ...ctx(),
      lobby_device_ids: now,
    });
    expect(results.broadcasts[0]?.targets).toEqual(now);
    expect(results.broadcasts[0]?.targets).not.toBe(now);
  });

  it('transition - the admin who is no session device gets the "(all)" events only', () => {
    const { all } = run(make(), [...cycleSteps(0, 3), start, { kind: 'error', device_id: 'mic-2', error_message: 'x' }]);
    const events = (d: string) => all.filter((b) => b.targets.includes(d)).map((b) => b.event);
    const expected = ['measurement.speaker_complete', 'measurement.error'];
    expect(events(ADMIN)).toEqual(expected);
    expect(events('bystander')).toEqual(expected);
    expect(events('mic-0')).toContain('measurement.phase_update');
    expect(all.filter((b) => TO_LOBBY.has(b.event)).map((b) => b.targets)).toEqual([JOINED, JOINED]);
  });
});

// ---- reads ----------------------------------------------------------------------------------

describe('statusOf and helpers', () => {
  it('statusOf - before the first start', () => {
    const st = statusOf(make());
    expect(SessionStatus.parse(st)).toEqual(st);
    expect(st).toMatchObject({
      state: 'created',
      phase: 'idle',
      attempt: 0,
      deadline_at: null,
      total_speakers: 2,
      completed_speakers: 0,
      current: { speaker_slot_id: null, ready: [], recording_started: [], uploaded: {}, missing_device_ids: [] },
      created_at: '2026-01-01T00:00:00.000Z',
    });
    expect(st.speakers[0]).toEqual({ device_id: 'spk-0', slot_id: 'S0', slot_label: 'Speaker 0', completed: false });
    expect(st.microphones[0]).toEqual({ device_id: 'mic-0', slot_id: 'M0' });
  });

  it('statusOf - during a cycle and after a speaker', () => {
    const s = run(make(), [...cycleSteps(0, 3), start, ready('mic-0')], T0 + 1000).session;
    const st = SessionStatus.parse(statusOf(s));
    expect(st).toMatchObject({
      state: 'running',
      phase: 'waiting_ready',
      current_speaker_index: 1,
      completed_speakers: 1,
      attempt: 1,
      deadline_at: new Date(T0 + 31_000).toISOString(),
      current: { speaker_slot_id: 'S1', ready: ['mic-0'], missing_device_ids: ['spk-1', 'mic-1', 'mic-2'] },
      updated_at: new Date(T0 + 1000).toISOString(),
    });
    expect(st.speakers.map((x) => x.completed)).toEqual([true, false]);
    expect(st.recordings).toHaveLength(3);
    const up = SessionStatus.parse(statusOf(run(make(), [...cycleSteps(0, 3, 'played'), uploaded('mic-1', 'z')]).session));
    expect(up.current.uploaded).toEqual({ 'mic-1': 'z' });
    expect(up.current.missing_device_ids).toEqual(['mic-0', 'mic-2']);
  });

  it('statusOf - a completed session', () => {
    const st = SessionStatus.parse(statusOf(run(make(), [...cycleSteps(0, 3), ...cycleSteps(1, 3)]).session));
    expect(st).toMatchObject({ state: 'completed', phase: 'completed', completed_speakers: 2, deadline_at: null });
    expect(st.current).toMatchObject({ speaker_slot_id: 'S1', missing_device_ids: [] });
    expect(st.speakers.map((x) => x.completed)).toEqual([true, true]);
    expect(st.recordings).toHaveLength(6);
  });

  it('neededDevices and wakeAt - nothing outside a running cycle', () => {
    const s = make();
    expect(neededDevices(s)).toEqual([]);
    expect(wakeAt(s, ctx())).toBeNull();
    const running = apply(s, start).session;
    expect(neededDevices(running)).toEqual(['spk-0', 'mic-0', 'mic-1', 'mic-2']);
    expect(wakeAt(running, ctx())).toBe(T0 + 30_000);
    const failed = apply(running, { kind: 'tick' }, T0 + 30_000).session;
    expect(wakeAt(failed, ctx())).toBeNull();
    expect(missingDevices(failed)).toEqual([]);
  });
});
