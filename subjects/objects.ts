/**
 * Shared objects of the contract (CONTRACT section 3): Lobby, Participant, Slot, the session
 * status, and the small value types they are built from.
 */
import { z } from 'zod';

// ---- value types ----------------------------------------------------------------------------

/** Printable ASCII, no leading or trailing space. Used for `Device-Id` and device fields. */
const PRINTABLE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** Longest device id: the v1 Gateway accepts up to 200 characters. */
export const MAX_DEVICE_ID = 200;

/** A device id: 1-200 printable ASCII characters (the app's are UUIDs, 36 characters). */
export const DeviceId = z
  .string()
  .min(1)
  .max(MAX_DEVICE_ID)
  .regex(PRINTABLE, `must be 1-${MAX_DEVICE_ID} printable ASCII characters`);

/**
 * An optional request field. `null` means absent (CONTRACT section 2): the real app sends
 * `slot_label: null`, `audio_hash: null` and the like. Parsed to `undefined`, so handlers see
 * one "absent" and never store a null the contract does not name.
 */
export function optional<T extends z.ZodType>(schema: T) {
  return schema
    .nullish()
    .transform((v): z.output<T> | undefined => v ?? undefined)
    .optional();
}

/** A lobby id as the service issues it (UUID). Unknown or malformed ids answer `lobby_not_found`. */
export const LobbyId = z.string().min(1).max(64);
/** A session id as the service issues it (UUID). Unknown or malformed ids answer `session_not_found`. */
export const SessionId = z.string().min(1).max(64);

export const LobbyState = z.enum(['open', 'measurement_running', 'closed']);
export type LobbyState = z.infer<typeof LobbyState>;
export const Role = z.enum(['none', 'speaker', 'microphone']);
export type Role = z.infer<typeof Role>;
export const ParticipantStatus = z.enum(['joined', 'left']);
export type ParticipantStatus = z.infer<typeof ParticipantStatus>;

/** ISO-8601 UTC timestamp, e.g. `2026-11-26T06:10:42.400Z`. */
export const Timestamp = z.string();

/** `max_participants` bounds and default (the default is overridable by `MAX_PARTICIPANTS`). */
export const MAX_PARTICIPANTS = { min: 2, max: 64, default: 32 } as const;
export const LOBBY_CODE = {
  length: 6,
  /** No look-alikes: no 0 O 1 I L. */
  alphabet: 'ABCDEFGHJKMNPQRSTUVWXYZ23456789',
} as const;

// ---- lobby ----------------------------------------------------------------------------------

export const Participant = z.strictObject({
  device_id: DeviceId,
  role: Role,
  /** Slot the admin gave this device for its role; null when none (or role `none`). */
  role_slot_id: z.string().nullable(),
  role_slot_label: z.string().nullable(),
  status: ParticipantStatus,
  /** Whether the Gateway last reported this device's socket as connected (`lobby.presence`). */
  connected: z.boolean(),
  joined_at: Timestamp,
  left_at: Timestamp.nullable(),
});
export type Participant = z.infer<typeof Participant>;

export const Lobby = z.strictObject({
  lobby_id: z.string(),
  /** Six-character join code; case-insensitive on join. */
  code: z.string(),
  admin_device_id: DeviceId,
  creator_device_id: DeviceId,
  state: LobbyState,
  max_participants: z.int(),
  created_at: Timestamp,
  /** Latest `lobby.room_snapshot` room, for late joiners. */
  room: z.record(z.string(), z.unknown()).nullable(),
  step_index: z.int().nullable(),
  profile_id: z.string().nullable(),
  /** The unfinished measurement session of this lobby, if any. */
  active_session_id: z.string().nullable(),
  /** The devices currently joined, in join order (one that left is listed again if it rejoins). */
  participants: z.array(Participant),
});
export type Lobby = z.infer<typeof Lobby>;

// ---- measurement ----------------------------------------------------------------------------

/** A device's place in a session: `{device_id, slot_id, slot_label?}` (as replied). */
export const Slot = z.strictObject({
  device_id: DeviceId,
  slot_id: z.string().min(1).max(64),
  slot_label: z.string().max(128).optional(),
});
export type Slot = z.infer<typeof Slot>;
/** A slot as requested in `create_session`: unknown fields ignored, `slot_label` may be null. */
export const SlotRequest = z.object({
  device_id: DeviceId,
  slot_id: Slot.shape.slot_id,
  slot_label: optional(z.string().max(128)),
});

export const SessionState = z.enum(['created', 'running', 'completed', 'cancelled']);
export type SessionState = z.infer<typeof SessionState>;

/**
 * Cycle phases. `idle` is the phase of a session before its first `start_speaker`;
 * `completed` / `cancelled` are the phases of a finished session.
 */
export const Phase = z.enum([
  'idle',
  'waiting_ready',
  'speaker_downloading',
  'starting_recording',
  'playing',
  'uploading',
  'speaker_complete',
  'failed',
  'completed',
  'cancelled',
]);
export type Phase = z.infer<typeof Phase>;

export const PHASE_DESCRIPTIONS: Record<Phase, string> = {
  idle: 'Session created; waiting for the admin to start the first speaker',
  waiting_ready: 'Waiting for the speaker and every microphone to be ready',
  speaker_downloading: 'Speaker is downloading the test signal',
  starting_recording: 'Microphones are starting to record',
  playing: 'Speaker is playing the test signal',
  uploading: 'Microphones are uploading their recordings',
  speaker_complete: 'Speaker measured; the next speaker starts shortly (automatically, or when the admin starts it)',
  failed: 'Cycle failed; the admin may retry this speaker or cancel the session',
  completed: 'Every speaker has been measured',
  cancelled: 'Session cancelled',
};

/** Per-phase deadlines in milliseconds (each 100 ms - 10 min when given per session). */
export const TIMEOUT_BOUNDS = { min: 100, max: 600_000 } as const;
const TimeoutMs = z.int().min(TIMEOUT_BOUNDS.min).max(TIMEOUT_BOUNDS.max);
export const Timeouts = z.object({
  ready_ms: optional(TimeoutMs),
  audio_ms: optional(TimeoutMs),
  recording_start_ms: optional(TimeoutMs),
  /** Whole playback deadline; when absent it is the signal duration + `PLAYBACK_GRACE_MS`. */
  playback_ms: optional(TimeoutMs),
  upload_ms: optional(TimeoutMs),
});
export type Timeouts = z.infer<typeof Timeouts>;

/** One uploaded recording: which microphone recorded which speaker, and the uploaded name. */
export const Recording = z.strictObject({
  speaker_slot_id: z.string(),
  speaker_device_id: z.string(),
  microphone_slot_id: z.string(),
  microphone_device_id: z.string(),
  upload_name: z.string(),
});
export type Recording = z.infer<typeof Recording>;

export const SessionStatus = z.strictObject({
  session_id: z.string(),
  job_id: z.string(),
  lobby_id: z.string(),
  state: SessionState,
  phase: Phase,
  /** Index into `speakers` of the speaker being (or last) measured; 0 before the first start. */
  current_speaker_index: z.int(),
  total_speakers: z.int(),
  /** A count here and in `phase_update`; a list of slot ids in `session_complete` (as in v1). */
  completed_speakers: z.int(),
  /** 1 for the first run of the current speaker, +1 for every retry. */
  attempt: z.int(),
  /** When the current phase times out; null when nothing is awaited. */
  deadline_at: Timestamp.nullable(),
  speakers: z.array(Slot.extend({ completed: z.boolean() })),
  microphones: z.array(Slot),
  current: z.strictObject({
    speaker_slot_id: z.string().nullable(),
    ready: z.array(z.string()),
    recording_started: z.array(z.string()),
    uploaded: z.record(z.string(), z.string()),
    /** Devices the current phase still waits for. */
    missing_device_ids: z.array(z.string()),
  }),
  recordings: z.array(Recording),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export type SessionStatus = z.infer<typeof SessionStatus>;
