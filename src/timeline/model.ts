/**
 * The session timeline as pure data: the session document, its recorded steps and its
 * broadcasts -> columns (one per device) and rows (steps and broadcasts in order) with offsets,
 * phases and marks. No I/O; the store reads the inputs, the renderers draw the result.
 */
import {
  EventName,
  Phase,
  SessionFailure,
  type SessionTimeline,
  type TimelineColumn,
  type TimelineMark,
  type TimelineRole,
  type TimelineRow,
} from '../../subjects/index.js';
import type { Session } from '../measurement/model.js';

/** One `session_steps` row. */
export interface StepInput {
  id: number;
  /** Epoch milliseconds. */
  atMs: number;
  step: string;
  device_id: string | null;
  phase_before: string;
  phase_after: string;
  detail: Record<string, unknown> | null;
}

/** One `lobby_events` row of the session. */
export interface EventInput {
  id: number;
  type: string;
  payload: Record<string, unknown>;
  targets: string[];
  /** Epoch milliseconds. */
  createdMs: number;
}

export interface TimelineInput {
  session: Session;
  /** In id order. */
  steps: StepInput[];
  /** In id order. */
  events: EventInput[];
}

/** Steps that broadcast even when the phase stays (see `ordered`). */
const BROADCASTING = new Set(['tick', 'error', 'cancel', 'lobby_closed']);

const asPhase = (p: unknown, fallback: Phase): Phase => {
  const parsed = Phase.safeParse(p);
  return parsed.success ? parsed.data : fallback;
};

/**
 * Steps and broadcasts merged into the order they happened. A commit's broadcasts share one
 * `created_at` (taken just before the write), and its step's `at` is taken a moment before
 * that, so time alone orders nearly everything. Both are millisecond timestamps, though: when a
 * step and a batch of broadcasts fall in the same millisecond, the batch comes first only if the
 * step before it is still waiting for its broadcasts (it changed the phase, or is of a kind that
 * always broadcasts); otherwise the step does (its own broadcasts follow it in that millisecond).
 */
function ordered(steps: StepInput[], events: EventInput[]): Array<{ step: StepInput } | { event: EventInput }> {
  const batches: EventInput[][] = [];
  for (const e of events) {
    const last = batches.at(-1);
    if (last && last[0]!.createdMs === e.createdMs) last.push(e);
    else batches.push([e]);
  }
  const out: Array<{ step: StepInput } | { event: EventInput }> = [];
  let i = 0;
  let j = 0;
  let awaiting = false;
  while (i < steps.length || j < batches.length) {
    const s = steps[i];
    const b = batches[j];
    const batchFirst = b !== undefined && (s === undefined || b[0]!.createdMs < s.atMs || (b[0]!.createdMs === s.atMs && awaiting));
    if (batchFirst) {
      for (const event of b) out.push({ event });
      awaiting = false;
      j++;
    } else {
      out.push({ step: s! });
      awaiting = s!.phase_before !== s!.phase_after || BROADCASTING.has(s!.step);
      i++;
    }
  }
  return out;
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** What a step row is marked with, if anything. */
function stepMark(s: StepInput): TimelineMark | null {
  const d = s.detail ?? {};
  if (s.step === 'tick') {
    const fired = text(d.fired);
    const kind =
      fired === SessionFailure.timeout ? 'deadline'
      : fired === SessionFailure.device_disconnected ? 'disconnect'
      : fired === SessionFailure.participant_left ? 'departure'
      : null;
    return kind && fired ? { kind, code: fired, device_ids: strings(d.missing_device_ids), message: null } : null;
  }
  if (s.step === 'error') {
    return {
      kind: 'error',
      code: text(d.error_code) ?? SessionFailure.device_error,
      device_ids: s.device_id ? [s.device_id] : [],
      message: text(d.error_message),
    };
  }
  if (s.step === 'participant_left' && s.device_id) {
    return { kind: 'departure', code: SessionFailure.participant_left, device_ids: [s.device_id], message: null };
  }
  return null;
}

/** `measurement.error` broadcasts are marked with the device the error came from. */
function eventMark(e: EventInput): TimelineMark | null {
  if (e.type !== EventName['measurement.error']) return null;
  const from = text(e.payload.error_device_id);
  return {
    kind: 'error',
    code: text(e.payload.error_code) ?? SessionFailure.device_error,
    device_ids: from ? [from] : strings(e.payload.missing_device_ids),
    message: text(e.payload.error_message),
  };
}

/** The first 8 characters of a device id (app ids are UUIDs). */
export const shortId = (deviceId: string): string => deviceId.slice(0, 8);

function column(deviceId: string, role: TimelineRole, slotId: string | null, name: string, admin: boolean): TimelineColumn {
  const short = shortId(deviceId);
  return { device_id: deviceId, role, slot_id: slotId, name, short_id: short, label: `${name} (${short})`, admin };
}

/** Builds a session's timeline. */
export function timeline({ session, steps, events }: TimelineInput): SessionTimeline {
  const created = session.created_at;
  const adminId = steps.find((s) => s.step === 'create_session')?.device_id ?? null;
  const columns = new Map<string, TimelineColumn>();
  for (const s of session.speakers) {
    if (!columns.has(s.device_id)) columns.set(s.device_id, column(s.device_id, 'speaker', s.slot_id, s.slot_label ?? s.slot_id, s.device_id === adminId));
  }
  for (const m of session.microphones) {
    if (!columns.has(m.device_id)) columns.set(m.device_id, column(m.device_id, 'microphone', m.slot_id, m.slot_label ?? m.slot_id, m.device_id === adminId));
  }
  const other = (id: string) => {
    if (!columns.has(id)) columns.set(id, column(id, 'other', null, id === adminId ? 'admin' : 'device', id === adminId));
  };

  const rows: TimelineRow[] = [];
  /** A row's time: its offset from the session's creation, and the instant itself. */
  const when = (ms: number) => ({ offset_ms: Math.round(ms - created), at: new Date(ms).toISOString() });
  let phase: Phase = asPhase(steps[0]?.phase_before, 'idle');
  for (const item of ordered(steps, events)) {
    if ('step' in item) {
      const s = item.step;
      const mark = stepMark(s);
      phase = asPhase(s.phase_after, phase);
      if (s.device_id) other(s.device_id);
      mark?.device_ids.forEach(other);
      rows.push({
        kind: 'step',
        ...when(s.atMs),
        phase,
        mark,
        step: s.step,
        device_id: s.device_id,
        phase_before: asPhase(s.phase_before, phase),
        detail: s.detail,
      });
    } else {
      const e = item.event;
      const mark = eventMark(e);
      e.targets.forEach(other);
      mark?.device_ids.forEach(other);
      rows.push({
        kind: 'broadcast',
        ...when(e.createdMs),
        phase,
        mark,
        id: e.id,
        event: e.type as EventName,
        targets: e.targets,
        data: e.payload,
      });
    }
  }
  return {
    session_id: session.session_id,
    lobby_id: session.lobby_id,
    job_id: session.job_id,
    state: session.state,
    phase: session.phase,
    created_at: new Date(created).toISOString(),
    duration_ms: rows.at(-1)?.offset_ms ?? 0,
    columns: [...columns.values()],
    rows,
  };
}
