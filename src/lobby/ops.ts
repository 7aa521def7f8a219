/**
 * What every lobby command shares: locking and loading a lobby, the `lobby.updated` broadcast
 * with the whole lobby after the change, and the common checks.
 */
import { EventName, type LobbyUpdateFieldsOf, type LobbyUpdateType, ErrorCode } from '../../subjects/index.js';
import type { Config } from '../config.js';
import type { LobbyRow, ParticipantRow } from '../db/entities.js';
import type { Database } from '../db/orm.js';
import { ServiceError, fail } from '../errors.js';
import type { SessionHooks } from '../measurement/hooks.js';
import type { Tx, UnitOfWork } from '../outbox/unit-of-work.js';
import type { CommandContext } from '../transport/context.js';
import type { JoinGuard } from '../transport/limits.js';
import { isJoined, joinedDeviceIds, joinedMembers } from './rules.js';
import { loadParticipants, lockLobby } from './store.js';
import { toLobby } from './view.js';

export interface LobbyDeps {
  db: Database;
  uow: UnitOfWork;
  config: Config;
  joinGuard: JoinGuard;
  sessions: SessionHooks;
}

/** A lobby row with its participants (join order), as one command works on it. */
export interface Loaded {
  lobby: LobbyRow;
  members: ParticipantRow[];
}

export function createLobbyOps({ sessions }: Pick<LobbyDeps, 'sessions'>) {
  async function locked(tx: Tx, lobbyId: string): Promise<Loaded> {
    const lobby = await lockLobby(tx.em, lobbyId);
    return { lobby, members: await loadParticipants(tx.em, lobby.id) };
  }

  /** Emits `lobby.updated` of `type` with the whole lobby after the change. */
  function updated<T extends LobbyUpdateType>(
    tx: Tx,
    { lobby, members }: Loaded,
    type: T,
    fields: LobbyUpdateFieldsOf<T>,
    extraTargets: string[] = [],
  ): void {
    const targets = new Set([...joinedDeviceIds(members), ...extraTargets]);
    tx.emit({
      lobbyId: lobby.id,
      event: EventName['lobby.updated'],
      data: { type, lobby_id: lobby.id, ...fields, lobby: toLobby(lobby, members) },
      targets: [...targets],
    });
  }

  function requireAdmin(lobby: LobbyRow, ctx: CommandContext): void {
    if (lobby.adminDeviceId !== ctx.deviceId) throw fail.forbidden('only the lobby admin may do this');
  }

  function requireNotClosed(lobby: LobbyRow): void {
    if (lobby.state === 'closed') {
      throw new ServiceError(ErrorCode.lobby_not_open, 'the lobby is closed', { state: lobby.state });
    }
  }

  function joinedTarget({ members }: Loaded, deviceId: string): ParticipantRow {
    const m = members.find((p) => p.deviceId === deviceId);
    if (!m || !isJoined(m)) throw fail.participantNotFound(deviceId);
    return m;
  }

  function touch(lobby: LobbyRow): void {
    lobby.updatedAt = new Date();
  }

  /** Closes the lobby: cancels its unfinished session first, then `lobby_closed`. */
  async function close(tx: Tx, loaded: Loaded, reason: string, extraTargets: string[] = []) {
    await sessions.applyToActive(tx, loaded, { kind: 'lobby_closed', reason });
    const { lobby } = loaded;
    lobby.state = 'closed';
    lobby.closedAt = new Date();
    lobby.activeSessionId = null;
    touch(lobby);
    updated(tx, loaded, 'lobby_closed', { reason }, extraTargets);
  }

  /** Lock, check admin and not closed: the shape of every "admin shares something" command. */
  async function adminChange(tx: Tx, lobbyId: string, ctx: CommandContext): Promise<Loaded> {
    const loaded = await locked(tx, lobbyId);
    requireAdmin(loaded.lobby, ctx);
    requireNotClosed(loaded.lobby);
    touch(loaded.lobby);
    return loaded;
  }

  async function requireNotInSession(tx: Tx, loaded: Loaded, deviceId: string, what: string): Promise<void> {
    const listed = await sessions.listedDevices(tx, loaded.lobby);
    if (listed.has(deviceId)) {
      throw new ServiceError(ErrorCode.session_active, `a device in the running session cannot be ${what}`, {
        session_id: loaded.lobby.activeSessionId,
        device_id: deviceId,
      });
    }
  }

  return { locked, updated, requireAdmin, requireNotClosed, joinedTarget, touch, close, adminChange, requireNotInSession };
}

export type LobbyOps = ReturnType<typeof createLobbyOps>;

/** Joined devices but `deviceId`. */
export function others({ members }: Loaded, deviceId: string): string[] {
  return joinedMembers(members)
    .map((m) => m.deviceId)
    .filter((d) => d !== deviceId);
}

export function newParticipant(lobbyId: string, deviceId: string, now: Date) {
  return {
    lobbyId,
    deviceId,
    role: 'none' as const,
    roleSlotId: null,
    roleSlotLabel: null,
    status: 'joined' as const,
    connected: true,
    kicked: false,
    joinedAt: now,
    leftAt: null,
  };
}
