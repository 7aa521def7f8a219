/**
 * Lobby commands (CONTRACT section 3, "Lobby"). Each command runs in one transaction that
 * locks the lobby row first, changes state, and writes its broadcasts to the outbox.
 */
import {
  EVENTS_PAGE,
  type LobbyUpdateFieldsOf,
  type LobbyUpdateType,
  type ReplyOf,
  type RequestOf,
} from '../../subjects/index.js';
import { LockMode, UniqueConstraintViolationException } from '@mikro-orm/core';
import type { Config } from '../config.js';
import { LobbyEntity, LobbyEventEntity, ParticipantEntity, type LobbyRow, type ParticipantRow } from '../db/entities.js';
import type { Database } from '../db/orm.js';
import { ServiceError, fail } from '../errors.js';
import type { Tx, UnitOfWork } from '../outbox/unit-of-work.js';
import type { CommandContext } from '../transport/context.js';
import type { JoinGuard } from '../transport/limits.js';
import { generateCode, isWellFormedCode, normalizeCode } from './codes.js';
import { adminAfterLeave, hasRoom, isJoined, joinedDeviceIds, joinedMembers, slotHolder } from './rules.js';
import { findLobby, loadParticipants, lockLobby } from './store.js';
import { toLobby } from './view.js';
import type { SessionHooks } from '../measurement/hooks.js';

export interface LobbyDeps {
  db: Database;
  uow: UnitOfWork;
  config: Config;
  joinGuard: JoinGuard;
  sessions: SessionHooks;
}

/** A lobby row with its participants, as one handler works on it. */
interface Loaded {
  lobby: LobbyRow;
  members: ParticipantRow[];
}

const CODE_ATTEMPTS = 8;
/** Largest `lobby.events` page in bytes: well inside NATS' default 1 MiB max_payload. */
const EVENTS_PAGE_MAX_BYTES = 512 * 1024;

export function createLobbyHandlers(deps: LobbyDeps) {
  const { db, uow, config, joinGuard, sessions } = deps;

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
      event: 'lobby.updated',
      data: { type, lobby_id: lobby.id, ...fields, lobby: toLobby(lobby, members) },
      targets: [...targets],
    });
  }

  function requireAdmin(lobby: LobbyRow, ctx: CommandContext): void {
    if (lobby.adminDeviceId !== ctx.deviceId) throw fail.forbidden('only the lobby admin may do this');
  }

  function requireNotClosed(lobby: LobbyRow): void {
    if (lobby.state === 'closed') {
      throw new ServiceError('lobby_not_open', 'the lobby is closed', { state: lobby.state });
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

  return {
    async 'lobby.create'(req: RequestOf<'lobby.create'>, ctx: CommandContext): Promise<ReplyOf<'lobby.create'>> {
      for (let attempt = 1; ; attempt++) {
        try {
          return await uow.run(async (tx) => {
            const now = new Date();
            const lobby = tx.em.create(LobbyEntity, {
              id: crypto.randomUUID(),
              code: generateCode(),
              creatorDeviceId: ctx.deviceId,
              adminDeviceId: ctx.deviceId,
              state: 'open',
              maxParticipants: req.max_participants ?? config.limits.maxParticipants,
              room: null,
              stepIndex: null,
              profileId: null,
              activeSessionId: null,
              createdAt: now,
              updatedAt: now,
              closedAt: null,
            });
            const creator = tx.em.create(ParticipantEntity, newParticipant(lobby.id, ctx.deviceId, now));
            // Insert now: a code collision must surface here, inside the retry loop.
            await tx.em.flush();
            const loaded = { lobby, members: [creator] };
            updated(tx, loaded, 'lobby_created', { device_id: ctx.deviceId });
            return toLobby(lobby, loaded.members);
          }, ctx.idempotency);
        } catch (err) {
          // Another open lobby has this code: draw again (a fresh transaction).
          const collision = err instanceof UniqueConstraintViolationException && err.message.includes('lobbies_open_code');
          if (collision && attempt < CODE_ATTEMPTS) continue;
          throw err;
        }
      }
    },

    async 'lobby.join'(req: RequestOf<'lobby.join'>, ctx: CommandContext): Promise<ReplyOf<'lobby.join'>> {
      joinGuard.check(ctx.deviceId);
      const code = normalizeCode(req.code);
      const notFound = () => {
        joinGuard.recordFailure(ctx.deviceId);
        return fail.lobbyNotFound();
      };
      if (!isWellFormedCode(code)) throw notFound();
      return uow.run(async (tx) => {
        // Look up and lock in one statement, so a concurrent close is seen (and not joined).
        const lobby = await tx.em.findOne(
          LobbyEntity,
          { code, state: { $ne: 'closed' } },
          { lockMode: LockMode.PESSIMISTIC_WRITE },
        );
        if (!lobby) throw notFound();
        const members = await loadParticipants(tx.em, lobby.id);
        const loaded = { lobby, members };
        const me = members.find((p) => p.deviceId === ctx.deviceId);
        if (me?.kicked) throw fail.forbidden('this device was removed from the lobby and may not rejoin');
        if (me && isJoined(me) && lobby.state !== 'closed') return toLobby(lobby, members);
        if (lobby.state !== 'open') {
          throw new ServiceError('lobby_not_open', `the lobby is ${lobby.state}`, { state: lobby.state });
        }
        if (!hasRoom(members, lobby.maxParticipants)) {
          throw new ServiceError('lobby_full', 'the lobby is full', { max_participants: lobby.maxParticipants });
        }
        const now = new Date();
        if (me) {
          // Rejoin: restore `joined`, keep the role; drop the slot if someone took it meanwhile.
          me.status = 'joined';
          me.leftAt = null;
          if (slotHolder(members, me.role, me.roleSlotId, me.deviceId)) {
            me.roleSlotId = null;
            me.roleSlotLabel = null;
          }
        } else {
          members.push(tx.em.create(ParticipantEntity, newParticipant(lobby.id, ctx.deviceId, now)));
        }
        touch(lobby);
        updated(tx, loaded, 'participant_joined', { device_id: ctx.deviceId, rejoined: Boolean(me) });
        return toLobby(lobby, members);
      }, ctx.idempotency);
    },

    async 'lobby.leave'(req: RequestOf<'lobby.leave'>, ctx: CommandContext): Promise<ReplyOf<'lobby.leave'>> {
      return uow.run(async (tx) => {
        const loaded = await locked(tx, req.lobby_id);
        const { lobby, members } = loaded;
        const me = members.find((p) => p.deviceId === ctx.deviceId);
        if (!me || !isJoined(me) || lobby.state === 'closed') return { ok: true as const };
        const nextAdmin = adminAfterLeave(members, lobby.adminDeviceId, ctx.deviceId);
        me.status = 'left';
        me.leftAt = new Date();
        touch(lobby);
        await sessions.applyToActive(tx, loaded, { kind: 'participant_left', device_id: ctx.deviceId });
        updated(tx, loaded, 'participant_left', { device_id: ctx.deviceId }, [ctx.deviceId]);
        if (nextAdmin === null) {
          await close(tx, loaded, 'everyone left', [ctx.deviceId]);
        } else if (nextAdmin !== lobby.adminDeviceId) {
          const previous = lobby.adminDeviceId;
          lobby.adminDeviceId = nextAdmin;
          updated(tx, loaded, 'admin_changed', { admin_device_id: nextAdmin, previous_admin_device_id: previous });
        }
        return { ok: true as const };
      }, ctx.idempotency);
    },

    async 'lobby.get'(req: RequestOf<'lobby.get'>): Promise<ReplyOf<'lobby.get'>> {
      return db.read(async (em) => {
        let lobby: LobbyRow | null;
        if (req.code !== undefined) {
          const code = normalizeCode(req.code);
          lobby = isWellFormedCode(code) ? await em.findOne(LobbyEntity, { code, state: { $ne: 'closed' } }) : null;
          if (!lobby) throw fail.lobbyNotFound();
        } else {
          lobby = await findLobby(em, req.lobby_id!);
        }
        return toLobby(lobby, await loadParticipants(em, lobby.id));
      });
    },

    async 'lobby.start'(req: RequestOf<'lobby.start'>, ctx: CommandContext): Promise<ReplyOf<'lobby.start'>> {
      return uow.run(async (tx) => {
        const loaded = await locked(tx, req.lobby_id);
        const { lobby } = loaded;
        requireAdmin(lobby, ctx);
        if (lobby.state !== 'open') {
          throw new ServiceError('lobby_not_open', `the lobby is ${lobby.state}`, { state: lobby.state });
        }
        lobby.state = 'measurement_running';
        touch(lobby);
        updated(tx, loaded, 'measurement_started', { device_id: ctx.deviceId });
        return { ok: true as const, state: lobby.state };
      }, ctx.idempotency);
    },

    async 'lobby.close'(req: RequestOf<'lobby.close'>, ctx: CommandContext): Promise<ReplyOf<'lobby.close'>> {
      return uow.run(async (tx) => {
        const loaded = await locked(tx, req.lobby_id);
        requireAdmin(loaded.lobby, ctx);
        if (loaded.lobby.state !== 'closed') await close(tx, loaded, 'closed by the admin');
        return { ok: true as const, state: 'closed' as const };
      }, ctx.idempotency);
    },

    async 'lobby.kick'(req: RequestOf<'lobby.kick'>, ctx: CommandContext): Promise<ReplyOf<'lobby.kick'>> {
      return uow.run(async (tx) => {
        const loaded = await locked(tx, req.lobby_id);
        const { lobby } = loaded;
        requireAdmin(lobby, ctx);
        requireNotClosed(lobby);
        if (req.target_device_id === ctx.deviceId) {
          throw fail.invalid('the admin cannot kick itself; use lobby.leave');
        }
        const target = joinedTarget(loaded, req.target_device_id);
        await requireNotInSession(tx, loaded, target.deviceId, 'kicked');
        target.status = 'left';
        target.kicked = true;
        target.leftAt = new Date();
        touch(lobby);
        updated(tx, loaded, 'participant_kicked', { target_device_id: target.deviceId }, [target.deviceId]);
        return { ok: true as const };
      }, ctx.idempotency);
    },

    async 'lobby.transfer_admin'(
      req: RequestOf<'lobby.transfer_admin'>,
      ctx: CommandContext,
    ): Promise<ReplyOf<'lobby.transfer_admin'>> {
      return uow.run(async (tx) => {
        const loaded = await locked(tx, req.lobby_id);
        const { lobby } = loaded;
        requireAdmin(lobby, ctx);
        requireNotClosed(lobby);
        const target = joinedTarget(loaded, req.target_device_id);
        if (target.deviceId !== lobby.adminDeviceId) {
          const previous = lobby.adminDeviceId;
          lobby.adminDeviceId = target.deviceId;
          touch(lobby);
          updated(tx, loaded, 'admin_changed', { admin_device_id: target.deviceId, previous_admin_device_id: previous });
        }
        return { ok: true as const, admin_device_id: lobby.adminDeviceId };
      }, ctx.idempotency);
    },

    async 'lobby.room_snapshot'(
      req: RequestOf<'lobby.room_snapshot'>,
      ctx: CommandContext,
    ): Promise<ReplyOf<'lobby.room_snapshot'>> {
      return uow.run(async (tx) => {
        const loaded = await adminChange(tx, req.lobby_id, ctx);
        loaded.lobby.room = req.room;
        tx.emit({
          lobbyId: loaded.lobby.id,
          event: 'lobby.room_snapshot',
          data: { lobby_id: loaded.lobby.id, room: req.room, source_device_id: ctx.deviceId, shared_at: new Date().toISOString() },
          targets: others(loaded, ctx.deviceId),
        });
        return { ok: true as const };
      }, ctx.idempotency);
    },

    async 'lobby.step_update'(
      req: RequestOf<'lobby.step_update'>,
      ctx: CommandContext,
    ): Promise<ReplyOf<'lobby.step_update'>> {
      return uow.run(async (tx) => {
        const loaded = await adminChange(tx, req.lobby_id, ctx);
        loaded.lobby.stepIndex = req.step_index;
        tx.emit({
          lobbyId: loaded.lobby.id,
          event: 'lobby.step_update',
          data: { lobby_id: loaded.lobby.id, step_index: req.step_index, source_device_id: ctx.deviceId },
          targets: others(loaded, ctx.deviceId),
        });
        return { ok: true as const, step_index: req.step_index };
      }, ctx.idempotency);
    },

    async 'lobby.profile_update'(
      req: RequestOf<'lobby.profile_update'>,
      ctx: CommandContext,
    ): Promise<ReplyOf<'lobby.profile_update'>> {
      return uow.run(async (tx) => {
        const loaded = await adminChange(tx, req.lobby_id, ctx);
        loaded.lobby.profileId = req.profile_id;
        tx.emit({
          lobbyId: loaded.lobby.id,
          event: 'lobby.profile_update',
          data: { lobby_id: loaded.lobby.id, profile_id: req.profile_id, source_device_id: ctx.deviceId },
          targets: others(loaded, ctx.deviceId),
        });
        return { ok: true as const, profile_id: req.profile_id };
      }, ctx.idempotency);
    },

    async 'lobby.presence'(req: RequestOf<'lobby.presence'>, ctx: CommandContext): Promise<ReplyOf<'lobby.presence'>> {
      return uow.run(async (tx) => {
        const rows = await tx.em.find(ParticipantEntity, { deviceId: ctx.deviceId, status: 'joined', kicked: false });
        // Lock in a fixed order so two presence reports can never deadlock each other.
        const lobbyIds = [...new Set(rows.map((r) => r.lobbyId))].sort();
        const lobbies: string[] = [];
        for (const lobbyId of lobbyIds) {
          const loaded = await locked(tx, lobbyId);
          if (loaded.lobby.state === 'closed') continue;
          lobbies.push(lobbyId);
          const me = loaded.members.find((p) => p.deviceId === ctx.deviceId)!;
          if (me.connected === req.connected) continue;
          me.connected = req.connected;
          touch(loaded.lobby);
          await sessions.applyToActive(tx, loaded, { kind: 'presence', device_id: ctx.deviceId, connected: req.connected });
          updated(tx, loaded, 'presence_changed', { device_id: ctx.deviceId, connected: req.connected });
        }
        return { ok: true as const, lobbies };
      }, ctx.idempotency);
    },

    async 'lobby.events'(req: RequestOf<'lobby.events'>, ctx: CommandContext): Promise<ReplyOf<'lobby.events'>> {
      return db.read(async (em) => {
        const lobby = await findLobby(em, req.lobby_id);
        if (!ctx.trusted) {
          const me = await em.findOne(ParticipantEntity, { lobbyId: lobby.id, deviceId: ctx.deviceId });
          if (!me || me.kicked) throw fail.forbidden('only members of the lobby may read its events');
        }
        const rows = await em.find(
          LobbyEventEntity,
          { lobbyId: lobby.id, id: { $gt: req.after_id ?? 0 } },
          { orderBy: { id: 'asc' }, limit: req.limit ?? EVENTS_PAGE.default },
        );
        // Stop the page before it outgrows one NATS message (each event carries a whole lobby,
        // room included); the caller pages on with `after_id`. At least one event per page.
        const events: ReplyOf<'lobby.events'>['events'] = [];
        let bytes = 0;
        for (const e of rows) {
          const event = { id: e.id, type: e.type, payload: e.payload, created_at: e.createdAt.toISOString() };
          bytes += Buffer.byteLength(JSON.stringify(event));
          if (events.length > 0 && bytes > EVENTS_PAGE_MAX_BYTES) break;
          events.push(event);
        }
        return { lobby_id: lobby.id, events };
      });
    },

    async 'role.assign'(req: RequestOf<'role.assign'>, ctx: CommandContext): Promise<ReplyOf<'role.assign'>> {
      return uow.run(async (tx) => {
        const loaded = await locked(tx, req.lobby_id);
        const { lobby, members } = loaded;
        requireAdmin(lobby, ctx);
        requireNotClosed(lobby);
        const target = joinedTarget(loaded, req.target_device_id);
        await requireNotInSession(tx, loaded, target.deviceId, 're-roled');
        const slotId = req.role === 'none' ? null : (req.role_slot_id ?? null);
        const slotLabel = req.role === 'none' ? null : (req.role_slot_label ?? null);
        const holder = slotHolder(members, req.role, slotId, target.deviceId);
        if (holder) {
          throw new ServiceError('slot_taken', `slot ${slotId} is already held by another ${req.role}`, {
            role: req.role,
            role_slot_id: slotId,
            device_id: holder.deviceId,
          });
        }
        target.role = req.role;
        target.roleSlotId = slotId;
        target.roleSlotLabel = slotLabel;
        touch(lobby);
        updated(tx, loaded, 'role_assigned', {
          target_device_id: target.deviceId,
          role: req.role,
          role_slot_id: slotId,
          role_slot_label: slotLabel,
        });
        return { ok: true as const };
      }, ctx.idempotency);
    },
  };

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
      throw new ServiceError('session_active', `a device in the running session cannot be ${what}`, {
        session_id: loaded.lobby.activeSessionId,
        device_id: deviceId,
      });
    }
  }
}

/** Joined devices but `deviceId`. */
function others({ members }: Loaded, deviceId: string): string[] {
  return joinedMembers(members)
    .map((m) => m.deviceId)
    .filter((d) => d !== deviceId);
}

function newParticipant(lobbyId: string, deviceId: string, now: Date) {
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

export type LobbyHandlers = ReturnType<typeof createLobbyHandlers>;
