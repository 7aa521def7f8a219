/**
 * The measurement protocol as a pure state machine (CONTRACT section 3, "Measurement sessions").
 *
 * `createSession` and `transition` decide; the session actor persists the returned session,
 * writes the broadcasts to the outbox and applies the lobby effect in one transaction, then
 * replies. Nothing here does I/O or reads a clock: time is `ctx.now` (epoch ms). Refusals are
 * thrown `ServiceError`s and change nothing; `duplicate` / `not_required` results return the
 * input session itself with no broadcasts.
 *
 * `lobby` in a result is what the lobby row must become in the same transaction: set when a
 * session is created, completed or cancelled by the admin (not on `lobby_closed`, see there).
 */
import {
  EventName,
  NEXT_SPEAKER_DELAY,
  SESSION_LIMITS,
  SessionFailure,
  type Issue,
  type LobbyState,
  type Participant,
  type Phase,
  type RequestOf,
  type Slot,
  Subject,
  ErrorCode,
} from '../../subjects/index.js';
import { ServiceError, fail } from '../errors.js';
import {
  Draft,
  advance,
  broadcast,
  currentSpeaker,
  startCycle,
  emptyCycle,
  expiredDisconnects,
  isActive,
  isFinished,
  missingDevices,
  neededDevices,
  roleIn,
  sessionFinished,
  unchanged,
  wrongPhase,
  type DeviceStep,
} from './cycle.js';
import type { ResolvedTimeouts, Session, Step, StepContext, TransitionResult } from './model.js';

export { missingDevices, neededDevices, sessionDevices, statusOf, wakeAt } from './cycle.js';

// ---- creation -------------------------------------------------------------------------------

/** A validated `measurement.create_session` request, the caller, and the id the caller generated. */
export type CreateSessionInput = RequestOf<'measurement.create_session'> & {
  session_id: string;
  /** The acting device (`Device-Id`); must be the lobby's admin. */
  device_id: string;
};

/** What `createSession` needs to know about the lobby (loaded and locked by the caller). */
export interface LobbyView {
  lobby_id: string;
  state: LobbyState;
  admin_device_id: string;
  active_session_id: string | null;
  participants: Pick<Participant, 'device_id' | 'role' | 'status'>[];
}

/** Deadline defaults from the environment; `playback_ms` is derived from the signal duration. */
export type TimeoutDefaults = Omit<ResolvedTimeouts, 'playback_ms'> & { playback_grace_ms: number };

export type CreateContext = StepContext & {
  defaults: TimeoutDefaults;
  /** 15 unless configured otherwise. */
  default_signal_duration_seconds: number;
  /** `NEXT_SPEAKER_DELAY_MS`; 1000 when not given. */
  default_next_speaker_delay_ms?: number;
};

/**
 * Validate a session against its lobby and build it (`created`, phase `idle`). The lobby
 * effect makes the lobby `measurement_running` with this session active; the caller writes
 * the lobby's own `lobby.updated`. No session broadcast: creation is not a phase change.
 */
export function createSession(input: CreateSessionInput, lobby: LobbyView, ctx: CreateContext): TransitionResult {
  if (input.device_id !== lobby.admin_device_id) {
    throw fail.forbidden('only the lobby admin may create a measurement session');
  }
  if (lobby.state === 'closed') {
    throw new ServiceError(ErrorCode.lobby_not_open, 'the lobby is closed', { state: lobby.state });
  }
  if (lobby.active_session_id !== null) {
    throw new ServiceError(ErrorCode.session_active, 'the lobby already has an unfinished session', {
      session_id: lobby.active_session_id,
    });
  }
  validateSlots(input);

  const lists = [
    ['speaker', 'speakers', input.speakers],
    ['microphone', 'microphones', input.microphones],
  ] as const;
  for (const [, , slots] of lists) {
    for (const { device_id } of slots) {
      const p = lobby.participants.find((q) => q.device_id === device_id);
      if (!p || p.status !== 'joined') {
        throw new ServiceError(ErrorCode.participant_not_found, `device ${device_id} has not joined this lobby`, { device_id });
      }
    }
  }
  for (const [expected, , slots] of lists) {
    for (const { device_id } of slots) {
      const role = lobby.participants.find((q) => q.device_id === device_id)?.role;
      if (role !== expected) {
        throw new ServiceError(ErrorCode.role_mismatch, `device ${device_id} has role ${role}, not ${expected}`, {
          device_id,
          role,
          expected,
        });
      }
    }
  }

  const signal = input.signal_duration_seconds ?? ctx.default_signal_duration_seconds;
  const t = input.timeouts ?? {};
  const { defaults } = ctx;
  const session: Session = {
    session_id: input.session_id,
    job_id: input.job_id,
    lobby_id: input.lobby_id,
    state: 'created',
    phase: 'idle',
    speakers: input.speakers.map(copySlot),
    microphones: input.microphones.map(copySlot),
    current_speaker_index: 0,
    attempt: 0,
    completed_speakers: [],
    recordings: [],
    audio_hash: null,
    signal_duration_seconds: signal,
    timeouts: {
      ready_ms: t.ready_ms ?? defaults.ready_ms,
      audio_ms: t.audio_ms ?? defaults.audio_ms,
      recording_start_ms: t.recording_start_ms ?? defaults.recording_start_ms,
      playback_ms: t.playback_ms ?? Math.round(signal * 1000) + defaults.playback_grace_ms,
      upload_ms: t.upload_ms ?? defaults.upload_ms,
    },
    phase_deadline_at: null,
    auto_advance: input.auto_advance ?? true,
    next_speaker_delay_ms: input.next_speaker_delay_ms ?? ctx.default_next_speaker_delay_ms ?? NEXT_SPEAKER_DELAY.default,
    next_speaker_at: null,
    cycle: emptyCycle(),
    disconnected: {},
    created_at: ctx.now,
    updated_at: ctx.now,
  };
  return {
    session,
    broadcasts: [],
    status: 'accepted',
    lobby: { state: 'measurement_running', active_session_id: session.session_id },
  };
}

function copySlot({ device_id, slot_id, slot_label }: Slot): Slot {
  return slot_label === undefined ? { device_id, slot_id } : { device_id, slot_id, slot_label };
}

/** Counts (already enforced by the schema; re-checked because this is the last line), duplicates. */
function validateSlots(input: CreateSessionInput): void {
  const issues: Issue[] = [];
  if (input.speakers.length < 1 || input.speakers.length > SESSION_LIMITS.speakers) {
    issues.push({ path: 'speakers', message: `must list 1-${SESSION_LIMITS.speakers} speakers` });
  }
  if (input.microphones.length < 1 || input.microphones.length > SESSION_LIMITS.microphones) {
    issues.push({ path: 'microphones', message: `must list 1-${SESSION_LIMITS.microphones} microphones` });
  }
  if (issues.length) throw fail.invalid('invalid session size', issues);

  const seen = new Set<string>();
  for (const list of ['speakers', 'microphones'] as const) {
    input[list].forEach((s, i) => {
      if (seen.has(s.device_id)) {
        issues.push({ path: `${list}.${i}.device_id`, message: `device ${s.device_id} is listed twice` });
      }
      seen.add(s.device_id);
    });
  }
  if (issues.length) throw fail.invalid('a device is listed more than once', issues);

  for (const list of ['speakers', 'microphones'] as const) {
    const slots = new Set<string>();
    input[list].forEach((s, i) => {
      if (slots.has(s.slot_id)) {
        issues.push({ path: `${list}.${i}.slot_id`, message: `slot id ${s.slot_id} is used twice` });
      }
      slots.add(s.slot_id);
    });
  }
  if (issues.length) throw fail.invalid('a slot id is used more than once', issues);
}

// ---- steps ----------------------------------------------------------------------------------

type AdminStep = Extract<Step, { kind: 'start_speaker' | 'cancel' | 'broadcast_results' }>;

const STEP_SUBJECT: Record<DeviceStep['kind'], Subject> = {
  ready: Subject['measurement.ready'],
  speaker_audio_ready: Subject['measurement.speaker_audio_ready'],
  recording_started: Subject['measurement.recording_started'],
  playback_complete: Subject['measurement.playback_complete'],
  recording_uploaded: Subject['measurement.recording_uploaded'],
  error: Subject['measurement.error'],
};

/** Which list a device must be on to send a step. */
const SENT_BY: Record<DeviceStep['kind'], 'speaker' | 'microphone' | 'any'> = {
  ready: 'any',
  speaker_audio_ready: 'speaker',
  recording_started: 'microphone',
  playback_complete: 'speaker',
  recording_uploaded: 'microphone',
  error: 'any',
};

/**
 * Decide one step. Throws a `ServiceError` for a refusal (nothing changes); otherwise returns
 * the new session (a fresh object), the broadcasts in publish order, the reply status, and
 * the lobby effect when the session finishes.
 */
export function transition(session: Session, step: Step, ctx: StepContext): TransitionResult {
  switch (step.kind) {
    case 'start_speaker':
    case 'cancel':
    case 'broadcast_results':
      return adminStep(session, step, ctx);
    case 'tick':
      return tick(session, ctx);
    case 'participant_left': {
      if (!neededDevices(session).includes(step.device_id)) return unchanged(session, 'not_required');
      const d = new Draft(session, ctx);
      d.failCycle(SessionFailure.participant_left, `device ${step.device_id} left the lobby`, step.device_id, [step.device_id]);
      return d.result();
    }
    case 'presence':
      return presence(session, step, ctx);
    case 'lobby_closed': {
      if (isFinished(session)) return unchanged(session, 'not_required');
      const d = new Draft(session, ctx);
      // No lobby effect: the lobby is being closed, and `open` would reopen it. The closing
      // handler sets the lobby `closed` with no active session itself.
      d.cancel(step.reason, false);
      return d.result();
    }
    default:
      return deviceStep(session, step, ctx);
  }
}

function adminStep(session: Session, step: AdminStep, ctx: StepContext): TransitionResult {
  if (step.device_id !== ctx.admin_device_id) throw fail.forbidden('only the lobby admin may do this');
  switch (step.kind) {
    case 'start_speaker':
      return startSpeaker(session, ctx);
    case 'cancel': {
      // Cancelling twice is answered like the first time (v1 compatibility).
      if (session.state === 'cancelled') return unchanged(session, 'duplicate');
      if (session.state === 'completed') throw sessionFinished(session);
      const d = new Draft(session, ctx);
      d.cancel(step.reason ?? 'cancelled by admin', true);
      return d.result();
    }
    case 'broadcast_results': {
      if (step.job_id !== session.job_id) {
        throw fail.invalid('job_id does not match the session', [
          { path: 'job_id', message: `expected the session's job_id ${session.job_id}` },
        ]);
      }
      const { session_id, job_id } = session;
      const b = broadcast(EventName['measurement.analysis_results'], { session_id, job_id, results: step.results }, [
        ...ctx.lobby_device_ids,
      ]);
      return { session, broadcasts: [b], status: 'accepted' };
    }
  }
}

function startSpeaker(session: Session, ctx: StepContext): TransitionResult {
  if (isFinished(session)) throw sessionFinished(session);
  // A cycle is running (started by auto-advance, or by an earlier call): a repeated start
  // (double tap, retried request, a v1-style admin after auto-advance) must not restart it.
  if (isActive(session.phase)) return unchanged(session, 'duplicate');
  const d = new Draft(session, ctx);
  startCycle(d);
  return d.result();
}
/**
 * Whether this device already did this step in the current (or, on a finished session, the
 * last) cycle: then it is a duplicate. Speaker steps are only ever taken from the current
 * speaker; `deviceStep` answers other speakers `not_required` before asking (see `didItself`).
 */
function alreadyDone(session: Session, step: DeviceStep): boolean {
  const { cycle } = session;
  switch (step.kind) {
    case 'ready':
      return cycle.ready.includes(step.device_id);
    case 'speaker_audio_ready':
      return cycle.audio_ready;
    case 'recording_started':
      return cycle.recording_started.includes(step.device_id);
    case 'playback_complete':
      return cycle.playback_complete;
    case 'recording_uploaded':
      return cycle.uploaded[step.device_id] !== undefined;
    case 'error':
      return session.phase === 'failed';
  }
}

/**
 * `alreadyDone`, and by this very device: on a finished session a retried step (its reply was
 * lost) is a duplicate only when it comes from the device that took it. `error` never is.
 */
function didItself(session: Session, step: DeviceStep): boolean {
  if (step.kind === 'error') return false;
  const bySpeaker = step.kind === 'speaker_audio_ready' || step.kind === 'playback_complete';
  if (bySpeaker && step.device_id !== currentSpeaker(session).device_id) return false;
  return alreadyDone(session, step);
}

/** The one phase that accepts each progress step (`error` is accepted in every active phase). */
const ACCEPTED_IN: Record<Exclude<DeviceStep['kind'], 'error'>, Phase> = {
  ready: 'waiting_ready',
  speaker_audio_ready: 'speaker_downloading',
  recording_started: 'starting_recording',
  playback_complete: 'playing',
  recording_uploaded: 'uploading',
};

function deviceStep(session: Session, step: DeviceStep, ctx: StepContext): TransitionResult {
  const subject = STEP_SUBJECT[step.kind];
  const role = roleIn(session, step.device_id);
  if (role === null) throw fail.forbidden(`device ${step.device_id} is not part of this session`);
  if (isFinished(session)) {
    // A retry of a step whose reply was lost (e.g. the final upload) is still a duplicate.
    if (didItself(session, step)) return unchanged(session, 'duplicate');
    throw sessionFinished(session);
  }
  const sender = SENT_BY[step.kind];
  if (sender !== 'any' && sender !== role) throw fail.forbidden(`a ${role} does not send ${subject}`);
  if (session.phase === 'idle') throw wrongPhase(session, subject);
  if (role === 'speaker' && step.device_id !== currentSpeaker(session).device_id) {
    return unchanged(session, 'not_required');
  }
  if (alreadyDone(session, step)) return unchanged(session, 'duplicate');
  const accepted = step.kind === 'error' ? isActive(session.phase) : session.phase === ACCEPTED_IN[step.kind];
  if (!accepted) throw wrongPhase(session, subject);

  const d = new Draft(session, ctx);
  advance(d, step, ctx);
  return d.result();
}

/**
 * The clock moved: fail the cycle at its deadline, or when a device it needs has been
 * disconnected for longer than the grace period. When both have passed, the earlier one is the
 * cause reported (a tie goes to the disconnect, the more specific reason).
 */
function tick(session: Session, ctx: StepContext): TransitionResult {
  if (session.phase === 'speaker_complete' && isDue(session.next_speaker_at, ctx.now)) {
    // Auto-advance: the next speaker's cycle, exactly as `start_speaker` starts it.
    const d = new Draft(session, ctx);
    startCycle(d);
    return d.result();
  }
  if (!isActive(session.phase)) return unchanged(session, 'not_required');
  const deadline = session.phase_deadline_at;
  const timedOut = deadline !== null && ctx.now >= deadline;
  const gone = expiredDisconnects(session, ctx.now, ctx.presence_grace_ms);
  if (timedOut && (gone.since === null || deadline < gone.since)) {
    const missing = missingDevices(session);
    const d = new Draft(session, ctx);
    d.failCycle(
      SessionFailure.timeout,
      `phase ${session.phase} timed out waiting for ${missing.join(', ') || 'nothing'}`,
      null,
      missing,
    );
    return d.result();
  }
  if (gone.devices.length > 0) {
    const d = new Draft(session, ctx);
    d.failCycle(
      SessionFailure.device_disconnected,
      `device ${gone.devices.join(', ')} disconnected`,
      gone.devices[0]!,
      gone.devices,
    );
    return d.result();
  }
  return unchanged(session, 'not_required');
}

/** Record when a session device went away; its grace period is judged by `tick`. */
function presence(session: Session, step: Extract<Step, { kind: 'presence' }>, ctx: StepContext): TransitionResult {
  if (isFinished(session) || roleIn(session, step.device_id) === null) return unchanged(session, 'not_required');
  const known = session.disconnected[step.device_id] !== undefined;
  // A repeated "down" keeps the first time: the grace period runs from the first report.
  const changes = step.connected ? known : !known;
  if (!changes) return unchanged(session, 'not_required');
  const d = new Draft(session, ctx);
  if (step.connected) delete d.s.disconnected[step.device_id];
  else d.s.disconnected[step.device_id] = ctx.now;
  return d.result();
}

function isDue(at: number | null | undefined, now: number): boolean {
  return at !== null && at !== undefined && now >= at;
}
