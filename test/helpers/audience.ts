/**
 * The contract's broadcast audiences, copied by hand from CONTRACT section 3 so that tests
 * check the code against the contract rather than against itself.
 */
import type { EventName } from '../../subjects/index.js';

/** The "(all)" events: to every joined device of the lobby, not only the session devices. */
export const TO_LOBBY = new Set<EventName>([
  'measurement.speaker_complete',
  'measurement.session_complete',
  'measurement.session_cancelled',
  'measurement.error',
  'measurement.analysis_results',
]);
