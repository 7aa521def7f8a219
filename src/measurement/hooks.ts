/** What lobby commands need from the measurement side, inside their lobby's actor. */
import type { Draft } from '../lobby/draft.js';
import type { Step } from './model.js';

export interface SessionHooks {
  /**
   * Applies an internal step (`participant_left`, `presence`, `lobby_closed`) to the lobby's
   * unfinished session, if any, as part of the command `tx` (one write, one transaction).
   */
  applyToActive(tx: Draft, step: Extract<Step, { kind: 'participant_left' | 'presence' | 'lobby_closed' }>): Promise<void>;
  /** Devices listed by the lobby's unfinished session (empty when there is none). */
  listedDevices(tx: Draft): Promise<Set<string>>;
}
