/**
 * Building blocks of the measurement state machine (`transition.ts`): which devices a cycle
 * needs and still waits for, the status reply, the wake-up time for ticks, `Draft` (the
 * private copy of a session that one step changes while collecting its broadcasts), and
 * `advance`, the cycle's progress once a step has passed every check.
 *
 * Pure: no I/O, no clock (time comes from `StepContext.now`).
 */
import {
  PHASE_DESCRIPTIONS,
  SessionFailure,
  type EventData,
  EventName,
  type Phase,
  type SessionStatus,
  type Slot,
  type StepStatus,
  Subject,
  ErrorCode,
} from '../../subjects/index.js';
import { ServiceError } from '../errors.js';
import type {
  Broadcast,
  Cycle,
  LobbyEffect,
  ResolvedTimeouts,
  Session,
  Step,
  StepContext,
  TransitionResult,
} from './model.js';

// ---- phases ---------------------------------------------------------------------------------

/** Phases in which a cycle runs: each has a deadline and needs the speaker and every microphone. */
export const ACTIVE_PHASES = [
  'waiting_ready',
  'speaker_downloading',
  'starting_recording',
  'playing',
  'uploading',
] as const satisfies readonly Phase[];
export type ActivePhase = (typeof ACTIVE_PHASES)[number];

export function isActive(phase: Phase): phase is ActivePhase {
  return (ACTIVE_PHASES as readonly Phase[]).includes(phase);
}

/** Completed and cancelled sessions never change again (except `broadcast_results`). */
export function isFinished(session: Session): boolean {
  return session.state === 'completed' || session.state === 'cancelled';
}

const PHASE_TIMEOUT: Record<ActivePhase, keyof ResolvedTimeouts> = {
  waiting_ready: 'ready_ms',
  speaker_downloading: 'audio_ms',
  starting_recording: 'recording_start_ms',
  playing: 'playback_ms',
  uploading: 'upload_ms',
};

const ADMIN_NEXT: Subject[] = [Subject['measurement.start_speaker'], Subject['measurement.cancel_session']];

/** The subjects each phase accepts (`details.expected` of `wrong_phase`). */
export const EXPECTED: Record<Phase, Subject[]> = {
  idle: ADMIN_NEXT,
  waiting_ready: [Subject['measurement.ready']],
  speaker_downloading: [Subject['measurement.speaker_audio_ready']],
  starting_recording: [Subject['measurement.recording_started']],
  playing: [Subject['measurement.playback_complete']],
  uploading: [Subject['measurement.recording_uploaded']],
  speaker_complete: ADMIN_NEXT,
  failed: ADMIN_NEXT,
  completed: [],
  cancelled: [],
};

export function wrongPhase(session: Session, subject: Subject): ServiceError {
  return new ServiceError(
    'wrong_phase',
    `${subject} is not accepted in phase ${session.phase}`,
    { phase: session.phase, expected: EXPECTED[session.phase] },
  );
}

export function sessionFinished(session: Session): ServiceError {
  return new ServiceError(ErrorCode.session_finished, `the session is ${session.state}`, {
    state: session.state,
  });
}

// ---- devices --------------------------------------------------------------------------------

/** The speaker being (or last) measured; `speakers[current_speaker_index]`. */
export function currentSpeaker(session: Session): Slot {
  const slot = session.speakers[session.current_speaker_index];
  // A session always has at least one speaker and the index never leaves the list.
  if (!slot) throw new Error(`session ${session.session_id}: no speaker at index ${session.current_speaker_index}`);
  return slot;
}

/**
 * Every device of the session, speakers then microphones, in list order: the audience of the
 * "(all session devices)" broadcasts (`start_measurement`, `phase_update`). The "(all)"
 * broadcasts go to the lobby's joined devices instead (`StepContext.lobby_device_ids`).
 */
export function sessionDevices(session: Session): string[] {
  return [...session.speakers, ...session.microphones].map((s) => s.device_id);
}

/** `speaker`, `microphone`, or null for a device outside the session. */
export function roleIn(session: Session, deviceId: string): 'speaker' | 'microphone' | null {
  if (session.speakers.some((s) => s.device_id === deviceId)) return 'speaker';
  if (session.microphones.some((s) => s.device_id === deviceId)) return 'microphone';
  return null;
}

function micIds(session: Session): string[] {
  return session.microphones.map((m) => m.device_id);
}

/** Devices the current cycle needs: the current speaker and every microphone, in active phases only. */
export function neededDevices(session: Session): string[] {
  if (!isActive(session.phase)) return [];
  return [currentSpeaker(session).device_id, ...micIds(session)];
}

/** Devices the current phase still waits for (empty outside active phases). */
export function missingDevices(session: Session): string[] {
  const { cycle } = session;
  switch (session.phase) {
    case 'waiting_ready':
      return neededDevices(session).filter((d) => !cycle.ready.includes(d));
    case 'speaker_downloading':
    case 'playing':
      return [currentSpeaker(session).device_id];
    case 'starting_recording':
      return micIds(session).filter((d) => !cycle.recording_started.includes(d));
    case 'uploading':
      return micIds(session).filter((d) => cycle.uploaded[d] === undefined);
    default:
      return [];
  }
}

/** Needed devices whose disconnect grace has run out at `now`, with the earliest expiry. */
export function expiredDisconnects(
  session: Session,
  now: number,
  graceMs: number,
): { devices: string[]; since: number | null } {
  const devices: string[] = [];
  let since: number | null = null;
  for (const d of neededDevices(session)) {
    const at = session.disconnected[d];
    if (at === undefined || now < at + graceMs) continue;
    devices.push(d);
    since = since === null ? at + graceMs : Math.min(since, at + graceMs);
  }
  return { devices, since };
}

// ---- reads ----------------------------------------------------------------------------------

const iso = (ms: number) => new Date(ms).toISOString();

/** The `measurement.session_status` reply. */
export function statusOf(session: Session): SessionStatus {
  const slot = ({ device_id, slot_id, slot_label }: Slot): Slot =>
    slot_label === undefined ? { device_id, slot_id } : { device_id, slot_id, slot_label };
  return {
    session_id: session.session_id,
    job_id: session.job_id,
    lobby_id: session.lobby_id,
    state: session.state,
    phase: session.phase,
    current_speaker_index: session.current_speaker_index,
    total_speakers: session.speakers.length,
    completed_speakers: session.completed_speakers.length,
    attempt: session.attempt,
    deadline_at: session.phase_deadline_at === null ? null : iso(session.phase_deadline_at),
    speakers: session.speakers.map((s) => ({
      ...slot(s),
      completed: session.completed_speakers.includes(s.slot_id),
    })),
    microphones: session.microphones.map(slot),
    current: {
      // attempt 0 means no speaker was ever started.
      speaker_slot_id: session.attempt === 0 ? null : currentSpeaker(session).slot_id,
      ready: [...session.cycle.ready],
      recording_started: [...session.cycle.recording_started],
      uploaded: { ...session.cycle.uploaded },
      missing_device_ids: missingDevices(session),
    },
    recordings: session.recordings.map((r) => ({ ...r })),
    created_at: iso(session.created_at),
    updated_at: iso(session.updated_at),
  };
}

/**
 * The earliest time a `tick` could change this session: the phase deadline or the end of the
 * disconnect grace of a device the cycle needs; null when no tick can change anything.
 * Invariant (property-tested): a `tick` at `now >= wakeAt(...)` is never a no-op.
 */
export function wakeAt(session: Session, ctx: Pick<StepContext, 'presence_grace_ms'>): number | null {
  if (session.phase === 'speaker_complete') return session.next_speaker_at ?? null;
  if (!isActive(session.phase)) return null;
  let at = session.phase_deadline_at;
  for (const d of neededDevices(session)) {
    const since = session.disconnected[d];
    if (since === undefined) continue;
    const expiry = since + ctx.presence_grace_ms;
    at = at === null ? expiry : Math.min(at, expiry);
  }
  return at;
}

// ---- changing a session ---------------------------------------------------------------------

export function emptyCycle(): Cycle {
  return { ready: [], audio_ready: false, recording_started: [], playback_complete: false, uploaded: {} };
}

/** A step that changes nothing. The input session is returned as is (never mutated). */
export function unchanged(session: Session, status: StepStatus): TransitionResult {
  return { session, broadcasts: [], status };
}

/** A broadcast whose data is checked against its event's schema at compile time. */
export function broadcast<E extends EventName>(event: E, data: EventData<E>, targets: string[]): Broadcast {
  return { event, data: data as Record<string, unknown>, targets };
}

/**
 * One step's change: a private copy of the session (the input is never touched), the
 * broadcasts in the order they must be published, and the lobby effect, if any.
 */
export class Draft {
  readonly s: Session;
  readonly out: Broadcast[] = [];
  lobby: LobbyEffect | undefined;
  readonly now: number;
  private readonly lobbyDevices: readonly string[];

  constructor(base: Session, ctx: Pick<StepContext, 'now' | 'lobby_device_ids'>) {
    this.now = ctx.now;
    this.lobbyDevices = [...ctx.lobby_device_ids];
    this.s = structuredClone(base);
    this.s.updated_at = ctx.now;
  }

  /** The "(all)" audience: the lobby's joined devices, in join order (a fresh array). */
  everyone(): string[] {
    return [...this.lobbyDevices];
  }

  /** Send to every session device ("(all session devices)"). */
  toSessionDevices<E extends EventName>(event: E, data: EventData<E>): void {
    this.out.push(broadcast(event, data, sessionDevices(this.s)));
  }

  /**
   * Move to `phase`: set its deadline, send `trigger` (the broadcast that makes the change
   * happen on the devices), then `measurement.phase_update`, which clients expect right after
   * the trigger of the change it describes.
   */
  enter(phase: Phase, trigger: Broadcast): void {
    this.s.phase = phase;
    this.s.phase_deadline_at = isActive(phase) ? this.now + this.s.timeouts[PHASE_TIMEOUT[phase]] : null;
    // Only `completeSpeaker` sets it again, right after entering `speaker_complete`.
    if (this.s.next_speaker_at !== undefined) this.s.next_speaker_at = null;
    this.out.push(trigger);
    this.toSessionDevices(EventName['measurement.phase_update'], {
      session_id: this.s.session_id,
      job_id: this.s.job_id,
      phase,
      phase_description: PHASE_DESCRIPTIONS[phase],
      current_speaker_index: this.s.current_speaker_index,
      total_speakers: this.s.speakers.length,
      completed_speakers: this.s.completed_speakers.length,
    });
  }

  /** Fail the running cycle; the session stays `running` so the admin can retry or cancel. */
  failCycle(code: string, message: string, deviceId: string | null, missing?: string[]): void {
    const failedPhase = this.s.phase;
    const data: EventData<'measurement.error'> = {
      session_id: this.s.session_id,
      error_device_id: deviceId,
      error_message: message,
      error_code: code,
      phase: failedPhase,
    };
    if (missing) data.missing_device_ids = missing;
    this.enter('failed', broadcast(EventName['measurement.error'], data, this.everyone()));
  }

  /** Cancel the session; `freeLobby` hands the lobby back (`open`, no active session). */
  cancel(reason: string, freeLobby: boolean): void {
    this.s.state = 'cancelled';
    this.enter(
      'cancelled',
      broadcast(EventName['measurement.session_cancelled'], { session_id: this.s.session_id, reason }, this.everyone()),
    );
    if (freeLobby) this.lobby = { state: 'open', active_session_id: null };
  }

  result(): TransitionResult {
    const r: TransitionResult = { session: this.s, broadcasts: this.out, status: 'accepted' };
    if (this.lobby) r.lobby = this.lobby;
    return r;
  }
}

// ---- the cycle's progress -------------------------------------------------------------------

/** Steps a session device sends. */
export type DeviceStep = Extract<
  Step,
  { kind: 'ready' | 'speaker_audio_ready' | 'recording_started' | 'playback_complete' | 'recording_uploaded' | 'error' }
>;

/**
 * Apply a device step the current phase accepts (all checks done by the caller): record it,
 * and when the phase has everything it waits for, move on and send the next trigger.
 */
export function advance(d: Draft, step: DeviceStep, ctx: StepContext): void {
  const s = d.s;
  const speaker = currentSpeaker(s);
  const mics = s.microphones.map((m) => m.device_id);
  const { session_id, job_id } = s;
  switch (step.kind) {
    case 'ready':
      s.cycle.ready.push(step.device_id);
      if (missingDevices(s).length === 0) {
        const audio_url = `${ctx.public_base_url}/v1/measurement/audio?session_id=${encodeURIComponent(session_id)}`;
        d.enter('speaker_downloading', broadcast(EventName['measurement.request_audio'], { session_id, audio_url }, [speaker.device_id]));
      }
      break;
    case 'speaker_audio_ready':
      s.cycle.audio_ready = true;
      if (step.audio_hash !== undefined) s.audio_hash = step.audio_hash;
      d.enter(
        'starting_recording',
        broadcast(
          EventName['measurement.start_recording'],
          { session_id, speaker_slot_id: speaker.slot_id, expected_duration_seconds: s.signal_duration_seconds },
          mics,
        ),
      );
      break;
    case 'recording_started':
      s.cycle.recording_started.push(step.device_id);
      if (missingDevices(s).length === 0) {
        d.enter('playing', broadcast(EventName['measurement.start_playback'], { session_id }, [speaker.device_id]));
      }
      break;
    case 'playback_complete': {
      s.cycle.playback_complete = true;
      const upload_endpoint = `${ctx.public_base_url}/v1/jobs/${encodeURIComponent(job_id)}/uploads/`;
      d.enter(
        'uploading',
        broadcast(EventName['measurement.stop_recording'], { session_id, job_id, speaker_slot_id: speaker.slot_id, upload_endpoint }, mics),
      );
      break;
    }
    case 'recording_uploaded':
      s.cycle.uploaded[step.device_id] = step.upload_name;
      if (missingDevices(s).length === 0) completeSpeaker(d);
      break;
    case 'error':
      d.failCycle(step.error_code ?? SessionFailure.device_error, step.error_message, step.device_id);
      break;
  }
}

/** Every microphone uploaded: record the cycle, and finish the session after the last speaker. */
function completeSpeaker(d: Draft): void {
  const s = d.s;
  const speaker = currentSpeaker(s);
  // Recordings only ever come from completed cycles, in microphone list order.
  const recordings = s.microphones.map((m) => ({
    speaker_slot_id: speaker.slot_id,
    speaker_device_id: speaker.device_id,
    microphone_slot_id: m.slot_id,
    microphone_device_id: m.device_id,
    upload_name: s.cycle.uploaded[m.device_id] ?? '',
  }));
  s.recordings.push(...recordings);
  s.completed_speakers.push(speaker.slot_id);
  const remaining = s.speakers.length - s.completed_speakers.length;
  d.enter(
    'speaker_complete',
    broadcast(
      EventName['measurement.speaker_complete'],
      {
        session_id: s.session_id,
        completed_speaker_slot_id: speaker.slot_id,
        remaining_speakers: remaining,
        recordings: recordings.map((r) => ({ ...r })),
      },
      d.everyone(),
    ),
  );
  if (remaining > 0) {
    if (s.auto_advance === true) {
      const delay = s.next_speaker_delay_ms ?? 0;
      // No pause: start right away, in this same step. Otherwise a tick starts it (durable
      // like a deadline: stored as the session's wake time, fired once across replicas).
      if (delay === 0) startCycle(d);
      else s.next_speaker_at = d.now + delay;
    }
    return;
  }
  s.state = 'completed';
  d.enter(
    'completed',
    broadcast(
      EventName['measurement.session_complete'],
      {
        session_id: s.session_id,
        job_id: s.job_id,
        completed_speakers: [...s.completed_speakers],
        recordings: s.recordings.map((r) => ({ ...r })),
        audio_hash: s.audio_hash,
      },
      d.everyone(),
    ),
  );
  d.lobby = { state: 'open', active_session_id: null };
}

/**
 * Start the current speaker's cycle, or the next speaker's after `speaker_complete`, or retry
 * after `failed` (all checks done by the caller): phase `waiting_ready` and
 * `measurement.start_measurement` to every session device. The one path of both the admin's
 * `start_speaker` and auto-advance.
 */
export function startCycle(d: Draft): void {
  const s = d.s;
  if (s.phase === 'idle') {
    s.current_speaker_index = 0;
    s.attempt = 1;
  } else if (s.phase === 'speaker_complete') {
    s.current_speaker_index += 1;
    s.attempt = 1;
  } else {
    s.attempt += 1; // failed: retry the same speaker
  }
  s.state = 'running';
  s.cycle = emptyCycle();
  const speaker = currentSpeaker(s);
  d.enter(
    'waiting_ready',
    broadcast(
      EventName['measurement.start_measurement'],
      {
        session_id: s.session_id,
        job_id: s.job_id,
        speaker_device_id: speaker.device_id,
        speaker_slot_id: speaker.slot_id,
        current_speaker_slot_id: speaker.slot_id,
        current_speaker_slot_label: speaker.slot_label ?? null,
        current_speaker_index: s.current_speaker_index,
        total_speakers: s.speakers.length,
        total_microphones: s.microphones.length,
        attempt: s.attempt,
      },
      sessionDevices(s),
    ),
  );
}
