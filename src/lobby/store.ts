/** Loading and locking lobby rows inside a transaction. */
import { LockMode } from '@mikro-orm/core';
import type { Em } from '../db/orm.js';
import { LobbyEntity, ParticipantEntity, type LobbyRow, type ParticipantRow } from '../db/entities.js';
import { fail } from '../errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Ids the service issues are UUIDs; anything else cannot name a lobby or session. */
export const isUuid = (id: string): boolean => UUID.test(id);

/**
 * Locks the lobby row (`SELECT ... FOR UPDATE`) for the rest of the transaction. Every writer
 * of a lobby's state or events takes this lock first: it serialises them, so the lobby's event
 * ids commit in id order, and concurrent joins cannot exceed `max_participants`.
 */
export async function lockLobby(em: Em, lobbyId: string): Promise<LobbyRow> {
  if (!isUuid(lobbyId)) throw fail.lobbyNotFound();
  const lobby = await em.findOne(LobbyEntity, { id: lobbyId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
  if (!lobby) throw fail.lobbyNotFound();
  return lobby;
}

export async function findLobby(em: Em, lobbyId: string): Promise<LobbyRow> {
  if (!isUuid(lobbyId)) throw fail.lobbyNotFound();
  const lobby = await em.findOne(LobbyEntity, { id: lobbyId });
  if (!lobby) throw fail.lobbyNotFound();
  return lobby;
}

/** Every participant row of a lobby (kicked ones included), in join order. */
export function loadParticipants(em: Em, lobbyId: string): Promise<ParticipantRow[]> {
  return em.find(ParticipantEntity, { lobbyId }, { orderBy: { id: 'asc' } });
}
