/**
 * Broadcasts (CONTRACT section 5): event names, their `data` schemas, the envelope and the
 * per-lobby subject `lobby.<lobby_id>.<event>`.
 */
import { z } from 'zod';
import { Lobby, LobbyState, Phase, Recording, Role } from './objects.js';

/** `type` values of `lobby.updated`. */
export const LobbyUpdateType = z.enum([
  'lobby_created',
  'participant_joined',
  'participant_left',
  'admin_changed',
  'lobby_closed',
  'measurement_started',
  'participant_kicked',
  'role_assigned',
  'presence_changed',
  /** The lobby's `state` or `active_session_id` changed because of a measurement session. */
  'state_changed',
]);
export type LobbyUpdateType = z.infer<typeof LobbyUpdateType>;

/**
 * Fields of each `lobby.updated` change, besides `type`, `lobby_id` and `lobby` (the whole
 * lobby after the change, so no client needs a follow-up `lobby.get`).
 */
export const LobbyUpdateFields = {
  lobby_created: z.strictObject({ device_id: z.string() }),
  participant_joined: z.strictObject({ device_id: z.string(), rejoined: z.boolean() }),
  participant_left: z.strictObject({ device_id: z.string() }),
  admin_changed: z.strictObject({
    admin_device_id: z.string(),
    previous_admin_device_id: z.string(),
  }),
  lobby_closed: z.strictObject({ reason: z.string() }),
  measurement_started: z.strictObject({ device_id: z.string() }),
  participant_kicked: z.strictObject({ target_device_id: z.string() }),
  role_assigned: z.strictObject({
    target_device_id: z.string(),
    role: Role,
    role_slot_id: z.string().nullable(),
    role_slot_label: z.string().nullable(),
  }),
  presence_changed: z.strictObject({ device_id: z.string(), connected: z.boolean() }),
  state_changed: z.strictObject({ state: LobbyState, active_session_id: z.string().nullable() }),
} as const satisfies Record<LobbyUpdateType, z.ZodObject>;
export type LobbyUpdateFieldsOf<T extends LobbyUpdateType> = z.infer<(typeof LobbyUpdateFields)[T]>;

export const LobbyUpdated = z.discriminatedUnion(
  'type',
  LobbyUpdateType.options.map((t) =>
    LobbyUpdateFields[t].extend({ type: z.literal(t), lobby_id: z.string(), lobby: Lobby }),
  ) as unknown as [z.ZodObject, ...z.ZodObject[]],
);

const sid = { session_id: z.string() };
const PhaseUpdate = z.strictObject({
  ...sid,
  job_id: z.string(),
  phase: Phase,
  phase_description: z.string(),
  current_speaker_index: z.int(),
  total_speakers: z.int(),
  /** A count (as in v1). */
  completed_speakers: z.int(),
});

/** Every broadcast event name and its `data`. */
export const events = {
  'lobby.updated': LobbyUpdated,
  'lobby.room_snapshot': z.strictObject({
    lobby_id: z.string(),
    room: z.record(z.string(), z.unknown()),
    source_device_id: z.string(),
    shared_at: z.string(),
  }),
  'lobby.step_update': z.strictObject({
    lobby_id: z.string(),
    step_index: z.int(),
    source_device_id: z.string(),
  }),
  'lobby.profile_update': z.strictObject({
    lobby_id: z.string(),
    profile_id: z.string(),
    source_device_id: z.string(),
  }),
  'measurement.start_measurement': z.strictObject({
    ...sid,
    job_id: z.string(),
    speaker_device_id: z.string(),
    speaker_slot_id: z.string(),
    /** Equals `speaker_slot_id`: the v1 name the app reads. */
    current_speaker_slot_id: z.string(),
    current_speaker_slot_label: z.string().nullable(),
    current_speaker_index: z.int(),
    total_speakers: z.int(),
    total_microphones: z.int(),
    /** 1 for the first run of this speaker, +1 for every retry. */
    attempt: z.int(),
  }),
  'measurement.request_audio': z.strictObject({ ...sid, audio_url: z.string() }),
  'measurement.start_recording': z.strictObject({
    ...sid,
    speaker_slot_id: z.string(),
    expected_duration_seconds: z.number(),
  }),
  'measurement.start_playback': z.strictObject({ ...sid }),
  'measurement.stop_recording': z.strictObject({
    ...sid,
    job_id: z.string(),
    speaker_slot_id: z.string(),
    upload_endpoint: z.string(),
  }),
  'measurement.speaker_complete': z.strictObject({
    ...sid,
    completed_speaker_slot_id: z.string(),
    remaining_speakers: z.int(),
    /** The recordings of the speaker just completed. */
    recordings: z.array(Recording),
  }),
  'measurement.session_complete': z.strictObject({
    ...sid,
    job_id: z.string(),
    /** Slot ids of the completed speakers, in order (a list here, as in v1). */
    completed_speakers: z.array(z.string()),
    recordings: z.array(Recording),
    audio_hash: z.string().nullable(),
  }),
  'measurement.session_cancelled': z.strictObject({ ...sid, reason: z.string() }),
  'measurement.error': z.strictObject({
    ...sid,
    /**
     * The reporting device; for `participant_left` / `device_disconnected` the device that left
     * or dropped off; null for `timeout` (see `missing_device_ids`).
     */
    error_device_id: z.string().nullable(),
    error_message: z.string(),
    error_code: z.string(),
    phase: Phase,
    /** Devices the failed phase was still waiting for (timeouts, departures). */
    missing_device_ids: z.array(z.string()).optional(),
  }),
  'measurement.analysis_results': z.strictObject({
    ...sid,
    job_id: z.string(),
    results: z.record(z.string(), z.unknown()),
  }),
  'measurement.phase_update': PhaseUpdate,
} as const;

export type EventName = keyof typeof events;
export const eventNames = Object.keys(events) as EventName[];
export const EventName = Object.fromEntries(eventNames.map((e) => [e, e])) as {
  readonly [E in EventName]: E;
};
export type EventData<E extends EventName> = z.infer<(typeof events)[E]>;

/** `error_code` values the service itself puts in `measurement.error`. */
export const SessionFailure = {
  timeout: 'timeout',
  participant_left: 'participant_left',
  device_disconnected: 'device_disconnected',
  /** A device reported an error without giving a code. */
  device_error: 'device_error',
} as const;

/** The body published on `lobby.<lobby_id>.<event>`. */
export const Envelope = z.strictObject({
  /** Strictly increasing within a lobby; events of a lobby are published in id order. */
  id: z.int(),
  event: z.enum(eventNames as [EventName, ...EventName[]]),
  lobby_id: z.string(),
  session_id: z.string().nullable(),
  data: z.record(z.string(), z.unknown()),
  targets: z.strictObject({ device_ids: z.array(z.string()) }),
  created_at: z.string(),
});
export type Envelope = z.infer<typeof Envelope>;

/** Root token of every broadcast subject. */
export const BROADCAST_ROOT = 'lobby';

/** `lobby.<lobby_id>.<event>` (with an optional deployment prefix, see `NATS_SUBJECT_PREFIX`). */
export function broadcastSubject(lobbyId: string, event: EventName, prefix = ''): string {
  return `${prefix}${BROADCAST_ROOT}.${lobbyId}.${event}`;
}
/** Every broadcast of one lobby (`lobby.<id>.>`), e.g. for a replay consumer's filter. */
export function lobbyBroadcastFilter(lobbyId: string, prefix = ''): string {
  return `${prefix}${BROADCAST_ROOT}.${lobbyId}.>`;
}
/** Every broadcast (`lobby.*.>`): the stream's subject and the Gateway's subscription. */
export function allBroadcastsFilter(prefix = ''): string {
  return `${prefix}${BROADCAST_ROOT}.*.>`;
}
/** `Nats-Msg-Id` of a broadcast: `<lobby_id>:<id>`. */
export function broadcastMsgId(lobbyId: string, id: number): string {
  return `${lobbyId}:${id}`;
}
