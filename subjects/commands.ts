/**
 * Every command subject of CONTRACT section 3 with its request (`data`) and reply schema.
 *
 * Requests are liberal (CONTRACT section 2): `z.object`s, so unknown fields are ignored
 * (stripped: never stored or echoed; the dispatcher logs them at debug), and an optional field
 * may be `null`, meaning absent (`optional`). Replies are `z.strictObject`s: we send exactly the
 * fields the contract names. The `commands` table is the one place where subject names are
 * spelled; transports and tests dispatch through it.
 */
import { z } from 'zod';
import {
  DeviceId,
  Lobby,
  LobbyId,
  LobbyState,
  MAX_PARTICIPANTS,
  Phase,
  Role,
  SessionId,
  SessionState,
  SessionStatus,
  SlotRequest,
  Timeouts,
  optional,
} from './objects.js';

const Ok = z.literal(true);
const RoomObject = z.record(z.string(), z.unknown());

// ---- lobby requests -------------------------------------------------------------------------

export const LobbyCreate = z.object({
  /** 2-64; default `MAX_PARTICIPANTS` (32). */
  max_participants: optional(z.int().min(MAX_PARTICIPANTS.min).max(MAX_PARTICIPANTS.max)),
});
export const LobbyJoin = z.object({
  /** Case-insensitive; surrounding spaces ignored. */
  code: z.string().max(64),
});
export const LobbyRef = z.object({ lobby_id: LobbyId });
/** `lobby.get`: exactly one of `lobby_id` or `code`. */
export const LobbyGet = z
  .object({ lobby_id: optional(LobbyId), code: optional(z.string().max(64)) })
  .refine((d) => (d.lobby_id === undefined) !== (d.code === undefined), {
    message: 'give exactly one of lobby_id or code',
  });
export const LobbyTarget = z.object({ lobby_id: LobbyId, target_device_id: DeviceId });
export const LobbyRoomSnapshot = z.object({ lobby_id: LobbyId, room: RoomObject });
export const LobbyStepUpdate = z.object({ lobby_id: LobbyId, step_index: z.int().min(0) });
export const LobbyProfileUpdate = z.object({
  lobby_id: LobbyId,
  profile_id: z.string().min(1).max(128),
});
export const LobbyPresence = z.object({ connected: z.boolean() });
export const EVENTS_PAGE = { default: 100, max: 1000 } as const;
export const LobbyEvents = z.object({
  lobby_id: LobbyId,
  /** Only events with a greater id. */
  after_id: optional(z.int().min(0)),
  limit: optional(z.int().min(1).max(EVENTS_PAGE.max)),
});
export const RoleAssign = z.object({
  lobby_id: LobbyId,
  target_device_id: DeviceId,
  role: Role,
  role_slot_id: optional(z.string().min(1).max(64)),
  role_slot_label: optional(z.string().max(128)),
});

// ---- lobby replies --------------------------------------------------------------------------

export const OkReply = z.strictObject({ ok: Ok });
export const StateReply = z.strictObject({ ok: Ok, state: LobbyState });
export const AdminReply = z.strictObject({ ok: Ok, admin_device_id: DeviceId });
export const StepIndexReply = z.strictObject({ ok: Ok, step_index: z.int() });
export const ProfileReply = z.strictObject({ ok: Ok, profile_id: z.string() });
export const PresenceReply = z.strictObject({ ok: Ok, lobbies: z.array(z.string()) });
export const LoggedEvent = z.strictObject({
  id: z.int(),
  /** The broadcast event name, e.g. `lobby.updated`. */
  type: z.string(),
  /** The broadcast's `data`. */
  payload: z.record(z.string(), z.unknown()),
  created_at: z.string(),
});
export type LoggedEvent = z.infer<typeof LoggedEvent>;
export const EventsReply = z.strictObject({ lobby_id: z.string(), events: z.array(LoggedEvent) });

// ---- measurement requests -------------------------------------------------------------------

export const SESSION_LIMITS = { speakers: 16, microphones: 64 } as const;
/** Bounds and default of `next_speaker_delay_ms` (the default is overridable by `NEXT_SPEAKER_DELAY_MS`). */
export const NEXT_SPEAKER_DELAY = { min: 0, max: 60_000, default: 1_000 } as const;
/** Signal length when `create_session` names none (also the app's own default). */
export const DEFAULT_SIGNAL_DURATION_SECONDS = 15;
export const SessionCreate = z.object({
  job_id: z.string().min(1).max(128),
  lobby_id: LobbyId,
  speakers: z.array(SlotRequest).min(1).max(SESSION_LIMITS.speakers),
  microphones: z.array(SlotRequest).min(1).max(SESSION_LIMITS.microphones),
  /** Length of the test signal (default 15 s); also sets the default playback deadline. */
  signal_duration_seconds: optional(z.number().positive().max(600)),
  timeouts: optional(Timeouts),
  /**
   * Default true: after a speaker completes and speakers remain, the service starts the next
   * speaker's cycle itself (the shipping app never sends that `start_speaker`).
   */
  auto_advance: optional(z.boolean()),
  /** Pause before an automatic next speaker (default `NEXT_SPEAKER_DELAY_MS`, 1000). */
  next_speaker_delay_ms: optional(z.int().min(NEXT_SPEAKER_DELAY.min).max(NEXT_SPEAKER_DELAY.max)),
});
export const SessionRef = z.object({ session_id: SessionId });
export const SpeakerAudioReady = z.object({
  session_id: SessionId,
  audio_hash: optional(z.string().max(256)),
});
export const RecordingUploaded = z.object({
  session_id: SessionId,
  upload_name: z.string().min(1).max(512),
});
export const SessionCancel = z.object({
  session_id: SessionId,
  reason: optional(z.string().max(512)),
});
export const SessionError = z.object({
  session_id: SessionId,
  error_message: z.string().min(1).max(2000),
  error_code: optional(z.string().min(1).max(64)),
});
export const BroadcastResults = z.object({
  session_id: SessionId,
  job_id: z.string().min(1).max(128),
  results: RoomObject,
});

// ---- measurement replies --------------------------------------------------------------------

export const SessionCreated = z.strictObject({
  session_id: z.string(),
  job_id: z.string(),
  lobby_id: z.string(),
  state: SessionState,
  total_speakers: z.int(),
  total_microphones: z.int(),
  /** The test signal's length in seconds (the app reads it; its own default is 15). */
  audio_duration_seconds: z.number(),
});
/**
 * How a step was taken: `accepted` (it changed the session), `duplicate` (this device already
 * did it this cycle; nothing changed), `not_required` (this cycle does not need this device).
 */
export const StepStatus = z.enum(['accepted', 'duplicate', 'not_required']);
export type StepStatus = z.infer<typeof StepStatus>;
export const StepReply = z.strictObject({
  ok: Ok,
  session_id: z.string(),
  status: StepStatus,
  state: SessionState,
  phase: Phase,
});
export type StepReply = z.infer<typeof StepReply>;

// ---- the table ------------------------------------------------------------------------------

/** Who may send a command (checked by its handler). */
export type Caller = 'any' | 'member' | 'admin' | 'gateway' | 'session_device';

function command<Req extends z.ZodType, Rep extends z.ZodType>(
  request: Req,
  reply: Rep,
  caller: Caller,
  description: string,
) {
  return { request, reply, caller, description };
}

/** Every command subject, its schemas and who may call it. Aliases share their target's entry. */
export const commands = {
  'lobby.create': command(LobbyCreate, Lobby, 'any', 'Create a lobby; the caller becomes its admin'),
  'lobby.join': command(LobbyJoin, Lobby, 'any', 'Join an open lobby by its code'),
  'lobby.leave': command(LobbyRef, OkReply, 'any', 'Leave a lobby (no-op for non-members)'),
  'lobby.get': command(LobbyGet, Lobby, 'any', 'Read a lobby by id or code'),
  'lobby.start': command(LobbyRef, StateReply, 'admin', 'Mark the lobby as measuring'),
  'lobby.close': command(LobbyRef, StateReply, 'admin', 'Close the lobby, cancelling its session'),
  'lobby.kick': command(LobbyTarget, OkReply, 'admin', 'Remove a participant for good'),
  'lobby.transfer_admin': command(LobbyTarget, AdminReply, 'admin', 'Hand the admin right over'),
  'lobby.room_snapshot': command(LobbyRoomSnapshot, OkReply, 'admin', 'Share the room model'),
  'lobby.step_update': command(LobbyStepUpdate, StepIndexReply, 'admin', 'Share the wizard step'),
  'lobby.profile_update': command(LobbyProfileUpdate, ProfileReply, 'admin', 'Share the profile'),
  'lobby.presence': command(LobbyPresence, PresenceReply, 'gateway', 'Report a socket up or down'),
  'lobby.events': command(LobbyEvents, EventsReply, 'member', 'Page through the event log'),
  'role.assign': command(RoleAssign, OkReply, 'admin', 'Give a participant a role and slot'),
  'measurement.create_session': command(SessionCreate, SessionCreated, 'admin', 'Create a session'),
  'measurement.start_speaker': command(SessionRef, StepReply, 'admin', 'Start (or retry) a speaker'),
  'measurement.ready': command(SessionRef, StepReply, 'session_device', 'Device is ready'),
  'measurement.client_ready': command(SessionRef, StepReply, 'session_device', 'Alias of measurement.ready'),
  'measurement.speaker_audio_ready': command(SpeakerAudioReady, StepReply, 'session_device', 'Speaker has the signal'),
  'measurement.recording_started': command(SessionRef, StepReply, 'session_device', 'Microphone records'),
  'measurement.playback_complete': command(SessionRef, StepReply, 'session_device', 'Speaker played'),
  'measurement.speaker_finished': command(SessionRef, StepReply, 'session_device', 'Alias of measurement.playback_complete'),
  'measurement.recording_uploaded': command(RecordingUploaded, StepReply, 'session_device', 'Microphone uploaded'),
  'measurement.session_status': command(SessionRef, SessionStatus, 'member', 'Read a session'),
  'measurement.cancel_session': command(SessionCancel, StepReply, 'admin', 'Cancel a session'),
  'measurement.error': command(SessionError, StepReply, 'session_device', 'Report a device error'),
  'measurement.broadcast_results': command(BroadcastResults, OkReply, 'admin', 'Share analysis results'),
} as const;

export type Subject = keyof typeof commands;
export const subjectNames = Object.keys(commands) as Subject[];
export const Subject = Object.fromEntries(subjectNames.map((s) => [s, s])) as {
  readonly [S in Subject]: S;
};
export type RequestOf<S extends Subject> = z.output<(typeof commands)[S]['request']>;
export type ReplyOf<S extends Subject> = z.output<(typeof commands)[S]['reply']>;

/** Aliases and the subject whose handler they share. */
export const aliases: Partial<Record<Subject, Subject>> = {
  'measurement.client_ready': 'measurement.ready',
  'measurement.speaker_finished': 'measurement.playback_complete',
};

/** The micro service every endpoint belongs to, and the queue group it serves in. */
export const SERVICE = {
  name: 'lobby',
  queue: 'lobby',
  description: 'Sonalyze lobby and measurement coordination',
} as const;

export { DeviceId };
