/**
 * What every lobby command shares: the `lobby.updated` broadcast with the whole lobby after the
 * change, and the common checks. Commands run on a `Draft` of the lobby's aggregate inside the
 * lobby's actor (src/lobby/actor.ts), which commits them in one round trip.
 */
import { EventName, type LobbyUpdateFieldsOf, type LobbyUpdateType, ErrorCode } from '../../subjects/index.js';
import type { Config } from '../config.js';
import { ServiceError, fail } from '../errors.js';
import type { SessionHooks } from '../measurement/hooks.js';
import type { CommandContext } from '../transport/context.js';
import type { JoinGuard } from '../transport/limits.js';
import type { Lobbies } from './actor.js';
import type { Draft, Loaded } from './draft.js';
import type { LobbyRow, ParticipantRow } from './model.js';
import { isJoined, joinedDeviceIds, joinedMembers } from './rules.js';
import { toLobby } from './view.js';

export type { Loaded } from './draft.js';

export interface LobbyDeps {
  lobbies: Lobbies;
  config: Config;
  joinGuard: JoinGuard;
  sessions: SessionHooks;
}

export function createLobbyOps({ sessions }: Pick<LobbyDeps, 'sessions'>) {
  /** Emits `lobby.updated` of `type` with the whole lobby after the change. */
  function updated<T extends LobbyUpdateType>(
    tx: Draft,
    type: T,
    fields: LobbyUpdateFieldsOf<T>,
    extraTargets: string[] = [],
  ): void {
    const { lobby, members } = tx.loaded;
    const targets = new Set([...joinedDeviceIds(members), ...extraTargets]);
    tx.emit({
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
  async function close(tx: Draft, reason: string, extraTargets: string[] = []) {
    await sessions.applyToActive(tx, { kind: 'lobby_closed', reason });
    const { lobby } = tx;
    lobby.state = 'closed';
    lobby.closedAt = new Date();
    lobby.activeSessionId = null;
    touch(lobby);
    updated(tx, 'lobby_closed', { reason }, extraTargets);
  }

  /** Check admin and not closed: the shape of every "admin shares something" command. */
  function adminChange(tx: Draft, ctx: CommandContext): Loaded {
    requireAdmin(tx.lobby, ctx);
    requireNotClosed(tx.lobby);
    touch(tx.lobby);
    return tx.loaded;
  }

  async function requireNotInSession(tx: Draft, deviceId: string, what: string): Promise<void> {
    const listed = await sessions.listedDevices(tx);
    if (listed.has(deviceId)) {
      throw new ServiceError(ErrorCode.session_active, `a device in the running session cannot be ${what}`, {
        session_id: tx.lobby.activeSessionId,
        device_id: deviceId,
      });
    }
  }

  return { updated, requireAdmin, requireNotClosed, joinedTarget, touch, close, adminChange, requireNotInSession };
}

export type LobbyOps = ReturnType<typeof createLobbyOps>;

/** Joined devices but `deviceId`. */
export function others({ members }: Loaded, deviceId: string): string[] {
  return joinedMembers(members)
    .map((m) => m.deviceId)
    .filter((d) => d !== deviceId);
}

export function newParticipant(deviceId: string, now: Date): ParticipantRow {
  return {
    deviceId,
    role: 'none',
    roleSlotId: null,
    roleSlotLabel: null,
    status: 'joined',
    connected: true,
    kicked: false,
    joinedAt: now,
    leftAt: null,
  };
}
