/**
 * A measurement session's timeline (`GET /sessions/{session_id}/timeline`, `npm run timeline`):
 * the steps that changed the session and the broadcasts it sent, in order, with millisecond
 * offsets from the session's creation. Built from the database's record of the session
 * (`session_steps`, the session's `lobby_events`, the session document); read-only, for people
 * finding out why a measurement went wrong.
 */
import { z } from 'zod';
import { eventNames, type EventName } from './events.js';
import { Phase, SessionState, Timestamp } from './objects.js';

/** What a column's device was in the session. */
export const TimelineRole = z.enum(['speaker', 'microphone', 'other']);
export type TimelineRole = z.infer<typeof TimelineRole>;

/** One device of the chart: a lane in the sequence chart. */
export const TimelineColumn = z.strictObject({
  device_id: z.string(),
  /**
   * `speaker` / `microphone`: listed in the session; `other`: a device that only sent a step
   * (an admin that is not a microphone) or only received the broadcasts that go to the whole
   * lobby (`speaker_complete`, `session_complete`, `error`, ...).
   */
  role: TimelineRole,
  /** The device's slot in the session; null for `other`. */
  slot_id: z.string().nullable(),
  /** The slot's label, else its slot id; `admin` or `device` for `other`. */
  name: z.string(),
  /** The first 8 characters of the device id. */
  short_id: z.string(),
  /** `<name> (<short_id>)`: what the charts print over the lane. */
  label: z.string(),
  /** Whether this device created the session (only the lobby's admin can). */
  admin: z.boolean(),
});
export type TimelineColumn = z.infer<typeof TimelineColumn>;

/** Kinds of trouble a row is marked with. */
export const TimelineMarkKind = z.enum([
  /** A phase deadline fired (`timeout`); `device_ids` are the devices it still waited for. */
  'deadline',
  /** A device the cycle needed stayed disconnected past the grace period. */
  'disconnect',
  /** A device the session needed left the lobby. */
  'departure',
  /** A device reported an error (`measurement.error`), or the service broadcast one. */
  'error',
]);
export type TimelineMarkKind = z.infer<typeof TimelineMarkKind>;

export const TimelineMark = z.strictObject({
  kind: TimelineMarkKind,
  /** `timeout`, `device_disconnected`, `participant_left`, or the code a device reported (`device_error` when it gave none). */
  code: z.string(),
  /** The devices it concerns: the device that reported or left, or those a deadline waited for. */
  device_ids: z.array(z.string()),
  /** The reported error message, when there is one. */
  message: z.string().nullable(),
});
export type TimelineMark = z.infer<typeof TimelineMark>;

const row = {
  /** Milliseconds since the session was created. */
  offset_ms: z.int(),
  at: Timestamp,
  /** The session's phase after this row. */
  phase: Phase,
  /** Trouble this row shows (a deadline that fired, an error and where it came from). */
  mark: TimelineMark.nullable(),
};

/** A step that changed the session: an arrow from the device (or the service itself) to the service. */
export const TimelineStepRow = z.strictObject({
  kind: z.literal('step'),
  ...row,
  /** `create_session`, a device step (`ready`, `recording_uploaded`, ...), `tick`, `participant_left`, `presence`, `lobby_closed`. */
  step: z.string(),
  /** The acting device; null for the service's own steps (`tick`, `lobby_closed`). */
  device_id: z.string().nullable(),
  phase_before: Phase,
  /** What the step carried or fired (a tick's `fired`, an error's `error_code`, an upload's name). */
  detail: z.record(z.string(), z.unknown()).nullable(),
});
export type TimelineStepRow = z.infer<typeof TimelineStepRow>;

/** A broadcast of the session: an arrow from the service to each target device. */
export const TimelineBroadcastRow = z.strictObject({
  kind: z.literal('broadcast'),
  ...row,
  /** The envelope id (the lobby's event log id). */
  id: z.int(),
  event: z.enum(eventNames as [EventName, ...EventName[]]),
  targets: z.array(z.string()),
  /** The broadcast's `data`. */
  data: z.record(z.string(), z.unknown()),
});
export type TimelineBroadcastRow = z.infer<typeof TimelineBroadcastRow>;

export const TimelineRow = z.discriminatedUnion('kind', [TimelineStepRow, TimelineBroadcastRow]);
export type TimelineRow = z.infer<typeof TimelineRow>;

/** `GET /sessions/{session_id}/timeline`. */
export const SessionTimeline = z.strictObject({
  session_id: z.string(),
  lobby_id: z.string(),
  job_id: z.string(),
  state: SessionState,
  phase: Phase,
  created_at: Timestamp,
  /** Offset of the last row (0 without rows). */
  duration_ms: z.int(),
  /** Devices, one lane each: speakers, then microphones (session order), then the others. */
  columns: z.array(TimelineColumn),
  /** Steps and broadcasts in the order they happened. */
  rows: z.array(TimelineRow),
});
export type SessionTimeline = z.infer<typeof SessionTimeline>;
