/**
 * The measurement session as pure data, and the steps that move it.
 *
 * This is what is persisted (as JSON, next to a few query columns) and what the pure
 * `transition` works on. Times are epoch milliseconds so the state machine never touches a
 * clock: `now` is always passed in.
 */
import type {
  EventName,
  Phase,
  Recording,
  SessionState,
  Slot,
  StepStatus,
} from '../../subjects/index.js';

/** Resolved per-phase deadlines (defaults from the environment, overridden per session). */
export interface ResolvedTimeouts {
  ready_ms: number;
  audio_ms: number;
  recording_start_ms: number;
  playback_ms: number;
  upload_ms: number;
}

/** The current cycle: which devices did what for the current speaker and attempt. */
export interface Cycle {
  /** Devices that sent `ready` (speaker and microphones), in arrival order. */
  ready: string[];
  /** Whether the speaker sent `speaker_audio_ready`. */
  audio_ready: boolean;
  /** Microphones that sent `recording_started`, in arrival order. */
  recording_started: string[];
  /** Whether the speaker sent `playback_complete`. */
  playback_complete: boolean;
  /** Microphone device id -> upload name. */
  uploaded: Record<string, string>;
}

export interface Session {
  session_id: string;
  job_id: string;
  lobby_id: string;
  state: SessionState;
  phase: Phase;
  speakers: Slot[];
  microphones: Slot[];
  /** Index into `speakers` of the current (or last) speaker. */
  current_speaker_index: number;
  /** 1 for the first run of the current speaker, +1 for every retry (0 before the first start). */
  attempt: number;
  /** Slot ids of the completed speakers, in completion order. */
  completed_speakers: string[];
  recordings: Recording[];
  /** The latest `audio_hash` a speaker reported. */
  audio_hash: string | null;
  signal_duration_seconds: number;
  timeouts: ResolvedTimeouts;
  /** When the current phase times out (epoch ms); null when nothing is awaited. */
  phase_deadline_at: number | null;
  /**
   * Whether the service starts the next speaker itself after a speaker completes (default
   * true). Absent in sessions stored before auto-advance existed: those wait for the admin.
   */
  auto_advance?: boolean;
  /** Pause before an automatic next speaker, in ms. */
  next_speaker_delay_ms?: number;
  /**
   * When the automatic next speaker starts (epoch ms): set in phase `speaker_complete` while
   * speakers remain, else null. Stored like a deadline, so it fires once, after restarts too.
   */
  next_speaker_at?: number | null;
  cycle: Cycle;
  /** Session devices reported disconnected, and since when (epoch ms). */
  disconnected: Record<string, number>;
  created_at: number;
  updated_at: number;
}

/** The context a step is decided in: the clock, the lobby's admin and members, and service settings. */
export interface StepContext {
  now: number;
  /** The lobby's current admin. */
  admin_device_id: string;
  /**
   * The lobby's joined devices (not left, not kicked), in join order, at the time of the step:
   * the audience of the "(all)" broadcasts (`speaker_complete`, `session_complete`,
   * `session_cancelled`, `error`, `analysis_results`), which reach the admin and bystanders too.
   */
  lobby_device_ids: string[];
  /** Base of `audio_url` and `upload_endpoint` (no trailing slash). */
  public_base_url: string;
  /** How long a disconnected device that the cycle needs is waited for. */
  presence_grace_ms: number;
}

/** Inbound steps. `device_id` is the acting device (from `Device-Id`). */
export type Step =
  | { kind: 'start_speaker'; device_id: string }
  | { kind: 'ready'; device_id: string }
  | { kind: 'speaker_audio_ready'; device_id: string; audio_hash?: string }
  | { kind: 'recording_started'; device_id: string }
  | { kind: 'playback_complete'; device_id: string }
  | { kind: 'recording_uploaded'; device_id: string; upload_name: string }
  | { kind: 'cancel'; device_id: string; reason?: string }
  | { kind: 'error'; device_id: string; error_message: string; error_code?: string }
  | { kind: 'broadcast_results'; device_id: string; job_id: string; results: Record<string, unknown> }
  /** Internal: the clock moved; fire a passed deadline, disconnect grace period or next speaker. */
  | { kind: 'tick' }
  /** Internal: a device left the lobby (or was removed). */
  | { kind: 'participant_left'; device_id: string }
  /** Internal: the Gateway reported a device's socket up or down. */
  | { kind: 'presence'; device_id: string; connected: boolean }
  /** Internal: the lobby was closed; cancels an unfinished session. */
  | { kind: 'lobby_closed'; reason: string };

export type StepKind = Step['kind'];

/** A broadcast to write to the outbox: event, data, and the devices it is meant for. */
export interface Broadcast {
  event: EventName;
  data: Record<string, unknown>;
  targets: string[];
}

/** What the lobby must become because of this step (applied in the same transaction). */
export interface LobbyEffect {
  state: 'open' | 'measurement_running';
  active_session_id: string | null;
}

export interface TransitionResult {
  session: Session;
  broadcasts: Broadcast[];
  /** How the step was taken (for the step reply). */
  status: StepStatus;
  lobby?: LobbyEffect;
}
