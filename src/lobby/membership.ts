/**
 * Who is in a lobby: create, join, leave, get, kick, admin hand-over and presence
 * (CONTRACT section 3, "Lobby"). Each runs in one transaction that locks the lobby row first.
 */
import { ErrorCode, type ReplyOf, type RequestOf } from '../../subjects/index.js';
import { LockMode, UniqueConstraintViolationException } from '@mikro-orm/core';
import { LobbyEntity, ParticipantEntity, type LobbyRow } from '../db/entities.js';
import { ServiceError, fail } from '../errors.js';
import type { CommandContext } from '../transport/context.js';
import type { HandlerTable } from '../transport/dispatch.js';
import { generateCode, isWellFormedCode, normalizeCode } from './codes.js';
import { adminAfterLeave, hasRoom, isJoined, slotHolder } from './rules.js';
import { findLobby, loadParticipants } from './store.js';
import { toLobby } from './view.js';
import { newParticipant, type LobbyDeps, type LobbyOps } from './ops.js';

const CODE_ATTEMPTS = 8;

export function membershipHandlers(deps: LobbyDeps, ops: LobbyOps) {
  const { db, uow, config, joinGuard, sessions } = deps;
  const { locked, updated, requireAdmin, requireNotClosed, joinedTarget, touch, close, requireNotInSession } = ops;

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
      await joinGuard.check(ctx.deviceId);
      const code = normalizeCode(req.code);
      // Recorded before the refusal is sent, so the device's next guess, on any replica, counts it.
      const notFound = async () => {
        await joinGuard.recordFailure(ctx.deviceId);
        return fail.lobbyNotFound();
      };
      if (!isWellFormedCode(code)) throw await notFound();
      return uow.run(async (tx) => {
        // Look up and lock in one statement, so a concurrent close is seen (and not joined).
        const lobby = await tx.em.findOne(
          LobbyEntity,
          { code, state: { $ne: 'closed' } },
          { lockMode: LockMode.PESSIMISTIC_WRITE },
        );
        if (!lobby) throw await notFound();
        const members = await loadParticipants(tx.em, lobby.id);
        const loaded = { lobby, members };
        const me = members.find((p) => p.deviceId === ctx.deviceId);
        if (me?.kicked) throw fail.forbidden('this device was removed from the lobby and may not rejoin');
        if (me && isJoined(me) && lobby.state !== 'closed') return toLobby(lobby, members);
        if (lobby.state !== 'open') {
          throw new ServiceError(ErrorCode.lobby_not_open, `the lobby is ${lobby.state}`, { state: lobby.state });
        }
        if (!hasRoom(members, lobby.maxParticipants)) {
          throw new ServiceError(ErrorCode.lobby_full, 'the lobby is full', { max_participants: lobby.maxParticipants });
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

  } satisfies HandlerTable;
}
