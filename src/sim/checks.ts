/**
 * What the real app casts, as checks (CONTRACT section 8, "What the app needs back"). A field
 * the app reads with the wrong type, or missing, makes it drop the whole message silently, and
 * the measurement stalls; the simulated phone records that as a protocol violation instead.
 */
import { EventName, LobbyUpdateType, Subject } from '../../subjects/index.js';

/** One field the app could not use. */
export interface Violation {
  /** `reply <subject>` or `push <event>`. */
  source: string;
  /** Dotted path of the field, e.g. `participants.2.role`; '' for the message itself. */
  field: string;
  problem: string;
}

const is = {
  string: (v: unknown) => typeof v === 'string',
  int: (v: unknown) => Number.isInteger(v),
  number: (v: unknown) => typeof v === 'number' && Number.isFinite(v),
  stringList: (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === 'string'),
  object: (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v),
  list: (v: unknown) => Array.isArray(v),
};
type Kind = keyof typeof is;
/** `kind` = required; `kind?` = may be absent or null (the app then uses its default). */
type Spec = Record<string, Kind | `${Kind}?`>;

function check(source: string, data: Record<string, unknown>, spec: Spec, at = ''): Violation[] {
  const out: Violation[] = [];
  for (const [field, want] of Object.entries(spec)) {
    const optional = want.endsWith('?');
    const kind = (optional ? want.slice(0, -1) : want) as Kind;
    const value = data[field];
    if (optional && (value === undefined || value === null)) continue;
    if (!is[kind](value)) {
      const got = value === undefined ? 'missing' : `got ${JSON.stringify(value)?.slice(0, 40)}`;
      out.push({ source, field: `${at}${field}`, problem: `expected ${kind}, ${got}` });
    }
  }
  return out;
}

/** The lobby an app reads from `lobby.join` / `lobby.get`: an id and typed participants. */
const LOBBY: Spec = { lobby_id: 'string', participants: 'list' };
const PARTICIPANT: Spec = { device_id: 'string', role: 'string' };

function checkLobby(source: string, data: Record<string, unknown>): Violation[] {
  const out = check(source, data, LOBBY);
  const list = Array.isArray(data.participants) ? data.participants : [];
  list.forEach((p, i) => {
    if (!is.object(p)) out.push({ source, field: `participants.${i}`, problem: 'expected object' });
    else out.push(...check(source, p as Record<string, unknown>, PARTICIPANT, `participants.${i}.`));
  });
  return out;
}

const REPLY_SPECS: Partial<Record<Subject, Spec>> = {
  [Subject['lobby.create']]: { lobby_id: 'string', code: 'string', admin_device_id: 'string' },
  [Subject['measurement.create_session']]: { session_id: 'string', audio_duration_seconds: 'number?' },
};

/** Checks a success reply the way the app reads it. */
export function checkReply(subject: Subject, data: unknown): Violation[] {
  const source = `reply ${subject}`;
  if (!is.object(data)) return [{ source, field: '', problem: 'reply is not an object' }];
  const body = data as Record<string, unknown>;
  // The app treats any non-null `error` key as a failure, whatever else the reply says.
  const out: Violation[] =
    body.error === undefined || body.error === null ? [] : [{ source, field: 'error', problem: 'success reply carries an error key' }];
  if (subject === Subject['lobby.join'] || subject === Subject['lobby.get']) out.push(...checkLobby(source, body));
  const spec = REPLY_SPECS[subject];
  if (spec) out.push(...check(source, body, spec));
  return out;
}

const sid: Spec = { session_id: 'string' };
const PUSH_SPECS: Partial<Record<EventName, Spec>> = {
  [EventName['lobby.step_update']]: { step_index: 'int' },
  [EventName['measurement.start_measurement']]: {
    ...sid,
    speaker_device_id: 'string',
    current_speaker_slot_id: 'string',
  },
  [EventName['measurement.request_audio']]: sid,
  [EventName['measurement.start_recording']]: { ...sid, speaker_slot_id: 'string' },
  [EventName['measurement.start_playback']]: sid,
  [EventName['measurement.stop_recording']]: { ...sid, speaker_slot_id: 'string', upload_endpoint: 'string' },
  [EventName['measurement.speaker_complete']]: sid,
  [EventName['measurement.session_complete']]: { ...sid, completed_speakers: 'stringList' },
  [EventName['measurement.session_cancelled']]: sid,
  [EventName['measurement.error']]: sid,
  [EventName['measurement.analysis_results']]: sid,
  [EventName['measurement.phase_update']]: {
    ...sid,
    current_speaker_index: 'int',
    total_speakers: 'int',
    completed_speakers: 'int',
  },
};

/** Checks a broadcast's `data` the way the app reads it. */
export function checkPush(event: EventName, data: unknown): Violation[] {
  const source = `push ${event}`;
  if (!is.object(data)) return [{ source, field: '', problem: 'data is not an object' }];
  const spec = PUSH_SPECS[event];
  return spec ? check(source, data as Record<string, unknown>, spec) : [];
}

/** Phases the app knows; it logs any other as unknown and shows it as idle. */
export const APP_PHASES: ReadonlySet<string> = new Set([
  'idle',
  'initiating',
  'notifying_clients',
  'waiting_ready',
  'speaker_downloading',
  'speaker_ready',
  'starting_recording',
  'recording',
  'playing',
  'playback_complete',
  'uploading',
  'processing',
  'completed',
  'failed',
]);

/** `audio_duration_seconds` the app assumes when `create_session` does not say. */
export const DEFAULT_AUDIO_DURATION_SECONDS = 15;

/** What the phone knows of its lobby, from its last `lobby.create/join/get` reply. */
export interface LobbyView {
  lobby_id: string;
  participants: Array<{ device_id: string; role: string }>;
  [field: string]: unknown;
}

/** Why a `lobby.get` answered after a `lobby.updated` does not show that change yet, if it does not. */
export function staleness(change: Record<string, unknown>, view: LobbyView): string | undefined {
  const who = (id: unknown) => view.participants.find((p) => p.device_id === id);
  if (change.type === LobbyUpdateType.enum.participant_joined && !who(change.device_id)) {
    return `lobby.get after participant_joined does not list ${String(change.device_id)}`;
  }
  if (change.type === LobbyUpdateType.enum.role_assigned && who(change.target_device_id)?.role !== change.role) {
    return `lobby.get after role_assigned does not show ${String(change.target_device_id)} as ${String(change.role)}`;
  }
  return undefined;
}
