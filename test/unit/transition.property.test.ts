import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { events, type EventName, type SessionState } from '../../subjects/index.js';
import { ServiceError } from '../../src/errors.js';
import type { Session, Step, StepContext, TransitionResult } from '../../src/measurement/model.js';
import {
  createSession,
  missingDevices,
  sessionDevices,
  statusOf,
  transition,
  wakeAt,
  type CreateContext,
} from '../../src/measurement/transition.js';
import { TO_LOBBY } from '../helpers/audience.js';

// ---- setup ----------------------------------------------------------------------------------

const T0 = Date.UTC(2026, 0, 1);
const OUTSIDER = 'outsider';
const ACTIVE = new Set(['waiting_ready', 'speaker_downloading', 'starting_recording', 'playing', 'uploading']);
const TRIGGERS: EventName[] = [
  'measurement.request_audio',
  'measurement.start_recording',
  'measurement.start_playback',
  'measurement.stop_recording',
  'measurement.speaker_complete',
];
const RANK: Record<SessionState, number> = { created: 0, running: 1, completed: 2, cancelled: 2 };
const ACCEPTED_IN: Partial<Record<Step['kind'], string>> = {
  ready: 'waiting_ready',
  speaker_audio_ready: 'speaker_downloading',
  recording_started: 'starting_recording',
  playback_complete: 'playing',
  recording_uploaded: 'uploading',
};
/** The broadcast that announces each phase; it comes right before that phase's phase_update. */
const PHASE_TRIGGER: Partial<Record<string, EventName>> = {
  waiting_ready: 'measurement.start_measurement',
  speaker_downloading: 'measurement.request_audio',
  starting_recording: 'measurement.start_recording',
  playing: 'measurement.start_playback',
  uploading: 'measurement.stop_recording',
  speaker_complete: 'measurement.speaker_complete',
  failed: 'measurement.error',
  completed: 'measurement.session_complete',
  cancelled: 'measurement.session_cancelled',
};
const DEVICE_STEPS = new Set(['ready', 'speaker_audio_ready', 'recording_started', 'playback_complete', 'recording_uploaded', 'error']);
const ADMIN_STEPS = new Set(['start_speaker', 'cancel', 'broadcast_results']);
const REFUSALS = new Set(['forbidden', 'session_finished', 'wrong_phase', 'invalid_request']);

interface Setup {
  nSpk: number;
  nMic: number;
  /** The admin is a separate phone, or also speaker 0. */
  adminIsSpeaker: boolean;
  /** Joined devices without a role (neither admin nor session device). */
  bystanders: number;
  grace: number;
  timeouts: { ready_ms: number; audio_ms: number; recording_start_ms: number; playback_ms: number; upload_ms: number };
}

// Mostly generous deadlines so that runs get far, sometimes tight ones so that ticks fire.
const timeoutMs = fc.oneof(
  { arbitrary: fc.integer({ min: 100, max: 3_000 }), weight: 1 },
  { arbitrary: fc.integer({ min: 3_000, max: 600_000 }), weight: 4 },
);
const setupArb: fc.Arbitrary<Setup> = fc.record({
  nSpk: fc.integer({ min: 1, max: 3 }),
  nMic: fc.integer({ min: 1, max: 4 }),
  adminIsSpeaker: fc.boolean(),
  bystanders: fc.integer({ min: 0, max: 2 }),
  grace: fc.integer({ min: 0, max: 20_000 }),
  timeouts: fc.record({
    ready_ms: timeoutMs,
    audio_ms: timeoutMs,
    recording_start_ms: timeoutMs,
    playback_ms: timeoutMs,
    upload_ms: timeoutMs,
  }),
});

const bystanders = (setup: Setup) => Array.from({ length: setup.bystanders }, (_, i) => `bystander-${i}`);

/** The lobby's joined devices in join order: the admin, the session devices, the bystanders. */
function lobbyDevices(setup: Setup): string[] {
  const speakers = Array.from({ length: setup.nSpk }, (_, i) => `spk-${i}`);
  const mics = Array.from({ length: setup.nMic }, (_, i) => `mic-${i}`);
  return [...new Set([setup.adminIsSpeaker ? 'spk-0' : 'admin', ...speakers, ...mics, ...bystanders(setup)])];
}

function ctxOf(setup: Setup, now: number): CreateContext {
  return {
    now,
    admin_device_id: setup.adminIsSpeaker ? 'spk-0' : 'admin',
    lobby_device_ids: lobbyDevices(setup),
    public_base_url: 'https://lobby.example.test',
    presence_grace_ms: setup.grace,
    defaults: { ready_ms: 30_000, audio_ms: 60_000, recording_start_ms: 15_000, playback_grace_ms: 30_000, upload_ms: 120_000 },
    default_signal_duration_seconds: 15,
  };
}

function newSession(setup: Setup): Session {
  const speakers = Array.from({ length: setup.nSpk }, (_, i) => ({ device_id: `spk-${i}`, slot_id: `S${i}` }));
  const microphones = Array.from({ length: setup.nMic }, (_, i) => ({ device_id: `mic-${i}`, slot_id: `M${i}` }));
  const ctx = ctxOf(setup, T0);
  return createSession(
    { session_id: 'sess-1', device_id: ctx.admin_device_id, job_id: 'job-1', lobby_id: 'lobby-1', speakers, microphones, timeouts: setup.timeouts },
    {
      lobby_id: 'lobby-1',
      state: 'open',
      admin_device_id: ctx.admin_device_id,
      active_session_id: null,
      participants: [
        ...speakers.map((s) => ({ device_id: s.device_id, role: 'speaker' as const, status: 'joined' as const })),
        ...microphones.map((s) => ({ device_id: s.device_id, role: 'microphone' as const, status: 'joined' as const })),
        { device_id: 'admin', role: 'none', status: 'joined' },
        ...bystanders(setup).map((d) => ({ device_id: d, role: 'none' as const, status: 'joined' as const })),
      ],
    },
    ctx,
  ).session;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

// ---- commands: resolved into steps against the current session ------------------------------

type Cmd =
  /** Do something the session is waiting for (keeps random runs moving forward). */
  | { c: 'helpful'; pick: number; dt: number }
  | { c: 'device'; kind: 'ready' | 'speaker_audio_ready' | 'recording_started' | 'playback_complete' | 'recording_uploaded' | 'error'; who: number; dt: number; code: boolean }
  | { c: 'admin'; kind: 'start_speaker' | 'cancel' | 'broadcast_results'; who: number; dt: number; sameJob: boolean }
  | { c: 'tick'; dt: number }
  | { c: 'presence'; who: number; connected: boolean; dt: number }
  | { c: 'left'; who: number; dt: number }
  | { c: 'lobby_closed'; dt: number }
  /** Send again a step accepted earlier (duplicates, late and reordered messages). */
  | { c: 'replay'; back: number; dt: number };

const dt = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 500 }), weight: 12 },
  { arbitrary: fc.integer({ min: 0, max: 200_000 }), weight: 1 },
);
const who = fc.oneof({ arbitrary: fc.constant(-1), weight: 3 }, { arbitrary: fc.nat(), weight: 1 });
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { arbitrary: fc.record({ c: fc.constant('helpful' as const), pick: fc.nat(), dt }), weight: 120 },
  {
    arbitrary: fc.record({
      c: fc.constant('device' as const),
      kind: fc.constantFrom('ready', 'speaker_audio_ready', 'recording_started', 'playback_complete', 'recording_uploaded', 'error'),
      who: fc.nat(),
      dt,
      code: fc.boolean(),
    }),
    weight: 12,
  },
  {
    arbitrary: fc.record({
      c: fc.constant('admin' as const),
      kind: fc.oneof(
        { arbitrary: fc.constant('start_speaker' as const), weight: 8 },
        { arbitrary: fc.constantFrom('cancel' as const, 'broadcast_results' as const), weight: 1 },
      ),
      who,
      dt,
      sameJob: fc.boolean(),
    }),
    weight: 9,
  },
  { arbitrary: fc.record({ c: fc.constant('tick' as const), dt }), weight: 9 },
  { arbitrary: fc.record({ c: fc.constant('presence' as const), who: fc.nat(), connected: fc.boolean(), dt }), weight: 6 },
  { arbitrary: fc.record({ c: fc.constant('left' as const), who: fc.nat(), dt }), weight: 3 },
  { arbitrary: fc.record({ c: fc.constant('lobby_closed' as const), dt }), weight: 1 },
  { arbitrary: fc.record({ c: fc.constant('replay' as const), back: fc.nat(), dt }), weight: 9 },
);

function actors(s: Session, admin: string, setup: Setup): string[] {
  return [...sessionDevices(s), admin, ...bystanders(setup), OUTSIDER];
}

/** The next step the session waits for: the admin's start, or the step of a missing device. */
function neededStep(s: Session, pick: number, admin: string): Step {
  if (['idle', 'speaker_complete', 'failed'].includes(s.phase)) return { kind: 'start_speaker', device_id: admin };
  const missing = missingDevices(s);
  const d = missing[pick % Math.max(missing.length, 1)];
  if (d === undefined) return { kind: 'tick' };
  switch (s.phase) {
    case 'waiting_ready':
      return { kind: 'ready', device_id: d };
    case 'speaker_downloading':
      return { kind: 'speaker_audio_ready', device_id: d, audio_hash: `h${pick % 3}` };
    case 'starting_recording':
      return { kind: 'recording_started', device_id: d };
    case 'playing':
      return { kind: 'playback_complete', device_id: d };
    default:
      return { kind: 'recording_uploaded', device_id: d, upload_name: `${d}-${pick}.wav` };
  }
}

function resolve(cmd: Cmd, s: Session, admin: string, history: Step[], setup: Setup): Step {
  const all = actors(s, admin, setup);
  const at = (i: number) => (i < 0 ? admin : (all[i % all.length] ?? OUTSIDER));
  switch (cmd.c) {
    case 'helpful':
      return neededStep(s, cmd.pick, admin);
    case 'device': {
      const device_id = at(cmd.who);
      if (cmd.kind === 'recording_uploaded') return { kind: cmd.kind, device_id, upload_name: `${device_id}.wav` };
      if (cmd.kind === 'error') {
        return cmd.code ? { kind: 'error', device_id, error_message: 'boom', error_code: 'mic_busy' } : { kind: 'error', device_id, error_message: 'boom' };
      }
      return { kind: cmd.kind, device_id };
    }
    case 'admin': {
      const device_id = at(cmd.who);
      if (cmd.kind === 'broadcast_results') {
        return { kind: cmd.kind, device_id, job_id: cmd.sameJob ? s.job_id : 'other-job', results: { ok: 1 } };
      }
      return cmd.kind === 'cancel' && cmd.sameJob ? { kind: 'cancel', device_id, reason: 'why not' } : { kind: cmd.kind, device_id };
    }
    case 'tick':
      return { kind: 'tick' };
    case 'presence':
      return { kind: 'presence', device_id: at(cmd.who), connected: cmd.connected };
    case 'left':
      return { kind: 'participant_left', device_id: at(cmd.who) };
    case 'lobby_closed':
      return { kind: 'lobby_closed', reason: 'lobby closed' };
    case 'replay':
      return history.length ? (history[history.length - 1 - (cmd.back % history.length)] as Step) : { kind: 'tick' };
  }
}

// ---- the oracle: what was observed, to judge each result against -----------------------------

class Oracle {
  readonly triggers = new Map<string, Map<EventName, number>>();
  readonly started = new Map<string, Set<string>>();
  /** speaker index -> attempt -> microphones whose upload was accepted. */
  readonly uploads = new Map<number, Map<number, Set<string>>>();
  /** `cycle|device|kind` of every accepted device step. */
  readonly taken = new Set<string>();
  finished = false;
  readonly disconnected: Record<string, number> = {};

  constructor(readonly setup: Setup) {}

  check(prev: Session, step: Step, r: TransitionResult, ctx: StepContext): void {
    const s = r.session;
    const devices = sessionDevices(prev);
    const key = `${s.current_speaker_index}:${s.attempt}`;

    // Broadcasts: schema, audience, phase_update right after each trigger. "(all)" events go to
    // exactly the lobby's joined devices, in join order; every other one to session devices only.
    r.broadcasts.forEach((b, i) => {
      events[b.event].parse(b.data);
      expect(b.targets.length).toBeGreaterThan(0);
      if (TO_LOBBY.has(b.event)) expect(b.targets, b.event).toEqual(ctx.lobby_device_ids);
      else for (const t of b.targets) expect(devices, b.event).toContain(t);
      if (b.event !== 'measurement.phase_update' && b.event !== 'measurement.analysis_results') {
        expect(r.broadcasts[i + 1]?.event).toBe('measurement.phase_update');
      }
      if (b.event === 'measurement.phase_update') {
        expect(r.broadcasts[i - 1]?.event).toBe(PHASE_TRIGGER[String(b.data.phase)]);
      }
    });

    // Presence: the first "down" time is kept until the device is back; nothing else touches it.
    const prevFinished = prev.state === 'completed' || prev.state === 'cancelled';
    if (step.kind === 'presence' && !prevFinished && devices.includes(step.device_id)) {
      const had = this.disconnected[step.device_id] !== undefined;
      if (step.connected) delete this.disconnected[step.device_id];
      else this.disconnected[step.device_id] ??= ctx.now;
      expect(r.status).toBe(had === step.connected ? 'accepted' : 'not_required');
    }
    expect(s.disconnected).toEqual(this.disconnected);
    if (r.status !== 'accepted') {
      expect(r.broadcasts).toEqual([]);
      expect(s).toEqual(prev);
      expect(r.lobby).toBeUndefined();
      return;
    }

    // Never backwards.
    expect(RANK[s.state]).toBeGreaterThanOrEqual(RANK[prev.state]);
    if (this.finished) expect(s.state).toBe(prev.state);
    expect(s.completed_speakers.slice(0, prev.completed_speakers.length)).toEqual(prev.completed_speakers);
    expect(s.recordings.slice(0, prev.recordings.length)).toEqual(prev.recordings);
    expect(s.phase_deadline_at !== null).toBe(ACTIVE.has(s.phase));
    if (s.phase !== prev.phase) {
      expect(r.broadcasts.at(-1)).toMatchObject({ event: 'measurement.phase_update', data: { phase: s.phase } });
    }
    if (s !== prev && step.kind !== 'broadcast_results') expect(s.updated_at).toBe(ctx.now);
    const nowFinished = s.state === 'completed' || s.state === 'cancelled';
    // Closing the lobby cancels without a lobby effect (the closing handler owns the lobby row).
    expect(r.lobby !== undefined).toBe(nowFinished && !this.finished && step.kind !== 'lobby_closed');
    this.finished = nowFinished;

    // The contract table: where each step is taken, and only once per device and cycle.
    if (step.kind === 'start_speaker') expect(['idle', 'speaker_complete', 'failed']).toContain(prev.phase);
    if (step.kind in ACCEPTED_IN) {
      expect(prev.phase).toBe(ACCEPTED_IN[step.kind]);
      const once = `${key}|${'device_id' in step ? step.device_id : ''}|${step.kind}`;
      expect(this.taken.has(once), `${once} taken twice`).toBe(false);
      this.taken.add(once);
    }
    // Cycle bookkeeping from accepted steps.
    if (step.kind === 'recording_started') this.setOf(this.started, key).add(step.device_id);
    if (step.kind === 'recording_uploaded') {
      const byAttempt = this.uploads.get(s.current_speaker_index) ?? new Map<number, Set<string>>();
      this.uploads.set(s.current_speaker_index, byAttempt);
      const set = byAttempt.get(s.attempt) ?? new Set<string>();
      byAttempt.set(s.attempt, set);
      set.add(step.device_id);
    }

    const mics = prev.microphones.map((m) => m.device_id);
    for (const b of r.broadcasts) {
      if (TRIGGERS.includes(b.event)) {
        const counts = this.triggers.get(key) ?? new Map<EventName, number>();
        this.triggers.set(key, counts);
        counts.set(b.event, (counts.get(b.event) ?? 0) + 1);
        expect(counts.get(b.event), `${b.event} twice in cycle ${key}`).toBe(1);
      }
      if (b.event === 'measurement.start_measurement') {
        expect(b.data).toMatchObject({ current_speaker_index: s.current_speaker_index, attempt: s.attempt });
      }
      if (b.event === 'measurement.start_playback') {
        expect([...this.setOf(this.started, key)].sort()).toEqual([...mics].sort());
      }
      if (b.event === 'measurement.session_complete') {
        for (let i = 0; i < prev.speakers.length; i++) {
          const full = [...(this.uploads.get(i)?.values() ?? [])].some((set) => mics.every((m) => set.has(m)));
          expect(full, `speaker ${i} has every upload`).toBe(true);
        }
        expect(s.recordings).toHaveLength(prev.speakers.length * mics.length);
        const pairs = new Set(s.recordings.map((x) => `${x.speaker_device_id}|${x.microphone_device_id}`));
        expect(pairs.size).toBe(s.recordings.length);
      }
    }
  }

  /** Whether this device step was accepted from this device in the session's current (last) cycle. */
  didInCycle(s: Session, step: Step): boolean {
    if (!(step.kind in ACCEPTED_IN) || !('device_id' in step)) return false;
    return this.taken.has(`${s.current_speaker_index}:${s.attempt}|${step.device_id}|${step.kind}`);
  }

  private setOf(m: Map<string, Set<string>>, key: string): Set<string> {
    const set = m.get(key) ?? new Set<string>();
    m.set(key, set);
    return set;
  }
}

/**
 * Refusals that follow from the step alone: who sent it, and whether the session is finished
 * (on a finished session, a device step its device took in the last cycle is a duplicate).
 */
function expectedRefusal(s: Session, step: Step, admin: string, oracle: Oracle): string | null {
  const finished = s.state === 'completed' || s.state === 'cancelled';
  if (DEVICE_STEPS.has(step.kind) && 'device_id' in step) {
    if (!sessionDevices(s).includes(step.device_id)) return 'forbidden';
    return finished && !oracle.didInCycle(s, step) ? 'session_finished' : null;
  }
  if (ADMIN_STEPS.has(step.kind) && 'device_id' in step) {
    if (step.device_id !== admin) return 'forbidden';
    if (step.kind === 'start_speaker' && finished) return 'session_finished';
    if (step.kind === 'cancel' && s.state === 'completed') return 'session_finished';
  }
  return null;
}

/** `wakeAt` is exact: a tick at that time changes the session, a tick just before does not. */
function probeWake(s: Session, ctx: StepContext): void {
  const w = wakeAt(s, ctx);
  if (w === null) {
    expect(transition(s, { kind: 'tick' }, { ...ctx, now: ctx.now + 1e9 }).status).toBe('not_required');
    return;
  }
  expect(transition(s, { kind: 'tick' }, { ...ctx, now: w }).status).toBe('accepted');
  expect(transition(s, { kind: 'tick' }, { ...ctx, now: w - 1 }).status).toBe('not_required');
}

// ---- properties -----------------------------------------------------------------------------

describe('transition - properties', () => {
  it('transition - random steps from random devices keep every invariant', () => {
    fc.assert(
      fc.property(setupArb, fc.array(cmdArb, { minLength: 1, maxLength: 250, size: 'max' }), (setup, cmds) => {
        let s = deepFreeze(newSession(setup));
        let now = T0;
        const admin = ctxOf(setup, now).admin_device_id;
        const oracle = new Oracle(setup);
        const history: Step[] = [];
        let afterEnd = 0;
        for (const cmd of cmds) {
          // A few steps after the end are worth checking; hundreds more are not.
          if ((s.state === 'completed' || s.state === 'cancelled') && ++afterEnd > 20) break;
          now += cmd.dt;
          const ctx = ctxOf(setup, now);
          const step = resolve(cmd, s, admin, history, setup);
          const before = structuredClone(s);
          const wake = wakeAt(s, ctx);
          const mustRefuse = expectedRefusal(s, step, admin, oracle);
          const finished = s.state === 'completed' || s.state === 'cancelled';
          // A device step its device already took in the last cycle of a finished session is a retry.
          const mustDuplicate = finished && DEVICE_STEPS.has(step.kind) && oracle.didInCycle(s, step);
          let r: TransitionResult;
          try {
            r = transition(s, step, ctx);
            expect(mustRefuse, `${step.kind} should be refused`).toBeNull();
          } catch (err) {
            // A refusal: a contract error, and the session is untouched.
            if (!(err instanceof ServiceError)) throw err;
            expect(mustDuplicate, `${step.kind} retried after the end: ${err.code}`).toBe(false);
            expect(REFUSALS.has(err.code), err.code).toBe(true);
            if (mustRefuse) expect(err.code).toBe(mustRefuse);
            if (err.code === 'wrong_phase') expect(err.details?.phase).toBe(s.phase);
            expect(s).toEqual(before);
            continue;
          }
          expect(s).toEqual(before);
          // A device step that a finished session does not refuse is a retry: a duplicate.
          if (finished && DEVICE_STEPS.has(step.kind)) expect(r.status, `${step.kind} after the end`).toBe('duplicate');
          if (step.kind === 'tick') {
            expect(r.status === 'accepted').toBe(wake !== null && now >= wake);
          }
          oracle.check(s, step, r, ctx);
          statusOf(r.session); // never throws, whatever the state
          probeWake(r.session, ctx);
          if (r.status === 'accepted' && step.kind !== 'tick') history.push(step);
          s = deepFreeze(r.session);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('transition - a well-behaved run always completes with every recording', () => {
    fc.assert(
      fc.property(setupArb, fc.array(fc.nat(), { minLength: 200, maxLength: 200 }), (setup, choices) => {
        // Deadlines far away: only ordering and duplicates vary here.
        const s0 = newSession({ ...setup, timeouts: { ready_ms: 600_000, audio_ms: 600_000, recording_start_ms: 600_000, playback_ms: 600_000, upload_ms: 600_000 } });
        let s = deepFreeze(s0);
        const admin = ctxOf(setup, T0).admin_device_id;
        const oracle = new Oracle(setup);
        const done: Step[] = [];
        let now = T0;
        let i = 0;
        const next = () => choices[i++ % choices.length] ?? 0;
        for (let n = 0; n < 2_000 && s.state !== 'completed'; n++) {
          now += 10;
          const c = next();
          // One step in five re-sends an earlier step of a device (a duplicate or a stray).
          const step = c % 5 === 0 && done.length ? (done[next() % done.length] as Step) : neededStep(s, next(), admin);
          const ctx = ctxOf(setup, now);
          let r: TransitionResult;
          try {
            r = transition(s, step, ctx);
          } catch (err) {
            // A re-sent step from an earlier phase may be out of phase now; never anything else.
            expect(err).toBeInstanceOf(ServiceError);
            expect((err as ServiceError).code).toBe('wrong_phase');
            continue;
          }
          oracle.check(s, step, r, ctx);
          if (r.status === 'accepted') done.push(step);
          s = deepFreeze(r.session);
        }
        expect(s.state).toBe('completed');
        expect(s.recordings).toHaveLength(setup.nSpk * setup.nMic);
        expect(s.completed_speakers).toEqual(s.speakers.map((x) => x.slot_id));
      }),
      { numRuns: 300 },
    );
  });
});
