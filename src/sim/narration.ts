/**
 * A narrated run, for the demo (`npm run simulate` with one session): one line per message
 * that moves the measurement on, leaving out the lobby chatter (the `lobby.get` after every
 * `lobby.updated`, step and profile shares) that would drown it.
 */
import { EventName, Subject } from '../../subjects/index.js';
import type { TraceEntry } from './device.js';

const QUIET_SENDS: ReadonlySet<string> = new Set<string>([
  Subject['lobby.get'],
  Subject['lobby.step_update'],
  Subject['lobby.profile_update'],
  Subject['lobby.room_snapshot'],
]);

/** The line for one message, or undefined when it is chatter; `admin` phones narrate phases. */
export function narrate(seconds: number, label: string, entry: TraceEntry, admin: boolean): string | undefined {
  const { direction, name, data } = entry;
  let what: string;
  if (direction === 'sent') {
    if (QUIET_SENDS.has(name)) return undefined;
    what = `-> ${name}${detail(name, data)}`;
  } else if (name === EventName['measurement.phase_update']) {
    if (!admin) return undefined;
    what = `   phase ${String(data.phase)}`;
  } else if (name.startsWith('measurement.')) {
    what = `<- ${name}${detail(name, data)}`;
  } else {
    return undefined;
  }
  return `${seconds.toFixed(3).padStart(8)} s  ${label.padEnd(10)} ${what}`;
}

function detail(name: string, data: Record<string, unknown>): string {
  switch (name) {
    case Subject['lobby.join']:
      return ` ${String(data.code)}`;
    case Subject['role.assign']:
      return ` ${String(data.role)} ${String(data.role_slot_id ?? '')}`.trimEnd();
    case EventName['measurement.start_measurement']:
      return ` (${String(data.current_speaker_slot_id)}, attempt ${String(data.attempt)})`;
    case EventName['measurement.error']:
      return ` ${String(data.error_code)}: ${String(data.error_message)}`;
    case Subject['measurement.recording_uploaded']:
      return ` ${String(data.upload_name)}`;
    default:
      return '';
  }
}
