/**
 * One line of words per timeline row, shared by the terminal and SVG charts: what the step or
 * broadcast was, the few data fields that tell it apart, and a mark's story in device names.
 */
import { EventName, type SessionTimeline, type TimelineMark, type TimelineRow } from '../../subjects/index.js';

/** Device id -> its column name (`Loudspeaker 1`, `microphone-2`, `admin`). */
export type Names = (deviceId: string) => string;

export function namesOf(t: SessionTimeline): Names {
  const byId = new Map(t.columns.map((c) => [c.device_id, c.name]));
  return (id) => byId.get(id) ?? id.slice(0, 8);
}

const str = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : '');

/** `Mark: timeout, waiting for microphone-2` and the like. */
export function describeMark(mark: TimelineMark, names: Names): string {
  const who = mark.device_ids.map(names).join(', ');
  switch (mark.kind) {
    case 'deadline':
      return `deadline fired (${mark.code})${who ? `, waiting for ${who}` : ''}`;
    case 'disconnect':
      return `disconnected too long${who ? `: ${who}` : ''}`;
    case 'departure':
      return `left the lobby${who ? `: ${who}` : ''}`;
    case 'error':
      return `error ${mark.code}${who ? ` from ${who}` : ''}${mark.message ? `: ${mark.message}` : ''}`;
  }
}

function describeStep(row: Extract<TimelineRow, { kind: 'step' }>): string {
  const d = row.detail ?? {};
  switch (row.step) {
    case 'tick':
      return d.fired === 'next_speaker' ? 'tick: next speaker' : `tick: ${str(d.fired) || 'deadline'}`;
    case 'presence':
      return `presence: ${d.connected === false ? 'disconnected' : 'connected'}`;
    case 'cancel':
    case 'lobby_closed':
      return d.reason ? `${row.step} (${str(d.reason)})` : row.step;
    case 'error':
      // The code and message are the mark's.
      return 'error';
    default:
      return row.step;
  }
}

function describeBroadcast(row: Extract<TimelineRow, { kind: 'broadcast' }>): string {
  const d = row.data;
  let extra = '';
  switch (row.event) {
    case EventName['measurement.phase_update']:
      extra = str(d.phase);
      break;
    case EventName['measurement.start_measurement']:
      extra = `${str(d.speaker_slot_id)}, attempt ${str(d.attempt)}`;
      break;
    case EventName['measurement.start_recording']:
    case EventName['measurement.stop_recording']:
      extra = str(d.speaker_slot_id);
      break;
    case EventName['measurement.speaker_complete']:
      extra = `${str(d.completed_speaker_slot_id)}, ${str(d.remaining_speakers)} left`;
      break;
    case EventName['measurement.session_cancelled']:
      extra = str(d.reason);
      break;
    case EventName['measurement.error']:
      extra = `in ${str(d.phase)}`;
      break;
    case EventName['lobby.updated']:
      extra = str(d.type);
      break;
  }
  return `#${row.id} ${row.event}${extra ? ` (${extra})` : ''}`;
}

/** The row's words, without its mark. */
export function describeRow(row: TimelineRow): string {
  return row.kind === 'step' ? describeStep(row) : describeBroadcast(row);
}
