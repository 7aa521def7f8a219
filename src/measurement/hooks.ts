/** What lobby commands need from the measurement side, inside their own transaction. */
import type { LobbyRow, ParticipantRow } from '../db/entities.js';
import type { Tx } from '../outbox/unit-of-work.js';
import type { Step } from './model.js';

export interface SessionHooks {
  /**
   * Applies an internal step (`participant_left`, `presence`, `lobby_closed`) to the lobby's
   * unfinished session, if any, in the caller's transaction (the lobby row is already locked).
   */
  applyToActive(
    tx: Tx,
    loaded: { lobby: LobbyRow; members: ParticipantRow[] },
    step: Extract<Step, { kind: 'participant_left' | 'presence' | 'lobby_closed' }>,
  ): Promise<void>;
  /** Devices listed by the lobby's unfinished session (empty when there is none). */
  listedDevices(tx: Tx, lobby: LobbyRow): Promise<Set<string>>;
}
