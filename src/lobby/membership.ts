/**
 * Who is in a lobby: create, join, leave, get, kick, admin hand-over and presence
 * (CONTRACT section 3, "Lobby"). Each runs in its lobby's actor and commits in one round trip.
 */
import { ErrorCode, type ReplyOf, type RequestOf } from '../../subjects/index.js';
import { ServiceError, fail } from '../errors.js';
import type { CommandContext } from '../transport/context.js';
import type { HandlerTable } from '../transport/dispatch.js';
import { generateCode, isWellFormedCode, normalizeCode } from './codes.js';
import { adminAfterLeave, hasRoom, isJoined, slotHolder } from './rules.js';
import { toLobby } from './view.js';
import { newParticipant, type LobbyDeps, type LobbyOps } from './ops.js';

const CODE_ATTEMPTS = 8;

/** Whether `err` is a code collision with another open lobby (PostgreSQL unique_violation). */
function isCodeCollision(err: unknown): boolean {
  const e = err as { code?: unknown; constraint?: unknown; message?: unknown } | null;
  return e?.code === '23505' && (e.constraint === 'lobbies_open_code' || String(e.message).includes('lobbies_open_code'));
}

export function membershipHandlers(deps: LobbyDeps, ops: LobbyOps) {
  const { lobbies, config, joinGuard, sessions } = deps;
  const { updated, requireAdmin, requireNotClosed, joinedTarget, touch, close, requireNotInSession } = ops;

  return {
    async 'lobby.create'(req: RequestOf<'lobby.create'>, ctx: CommandContext): Promise<ReplyOf<'lobby.create'>> {
      for (let attempt = 1; ; attempt++) {
        const now = new Date();
        const lobby = {
          id: crypto.randomUUID(),
          code: generateCode(),
          creatorDeviceId: ctx.deviceId,
          adminDeviceId: ctx.deviceId,
          state: 'open' as const,
          maxParticipants: req.max_participants ?? config.limits.maxParticipants,
          room: null,
          stepIndex: null,
          profileId: null,
          activeSessionId: null,
          createdAt: now,
          updatedAt: now,
          closedAt: null,
        };
        try {
          return await lobbies.create(
            lobby,
            newParticipant(ctx.deviceId, now),
            (tx) => {
              updated(tx, 'lobby_created', { device_id: ctx.deviceId });
              return toLobby(tx.lobby, tx.members);
            },
            ctx,
          );
        } catch (err) {
          // Another open lobby has this code: draw again.
          if (isCodeCollision(err) && attempt < CODE_ATTEMPTS) continue;
          throw err;
        }
      }
    },

    async 'lobby.join'(req: RequestOf<'lobby.join'>, ctx: CommandContext): Promise<ReplyOf<'lobby.join'>> {
      await joinGuard.check(ctx.deviceId);
      const code = normalizeCode(req.code);
      // Recorded before the refusal is sent, so the device's next guess, on any replica, counts it.
      const wrongCode = async () => {
        await joinGuard.recordFailure(ctx.deviceId);
        return fail.lobbyNotFound();
      };
      if (!isWellFormedCode(code)) throw await wrongCode();
      let unknown = false;
      try {
        return await lobbies.run(
          { code },
          (tx) => {
            const { lobby, members } = tx.loaded;
            const me = members.find((p) => p.deviceId === ctx.deviceId);
            if (me?.kicked) throw fail.forbidden('this device was removed from the lobby and may not rejoin');
            if (me && isJoined(me)) return toLobby(lobby, members);
            if (lobby.state !== 'open') {
              throw new ServiceError(ErrorCode.lobby_not_open, `the lobby is ${lobby.state}`, { state: lobby.state });
            }
            if (!hasRoom(members, lobby.maxParticipants)) {
              throw new ServiceError(ErrorCode.lobby_full, 'the lobby is full', { max_participants: lobby.maxParticipants });
            }
            if (me) {
              // Rejoin: restore `joined`, keep the role; drop the slot if someone took it meanwhile.
              me.status = 'joined';
              me.leftAt = null;
              if (slotHolder(members, me.role, me.roleSlotId, me.deviceId)) {
                me.roleSlotId = null;
                me.roleSlotLabel = null;
              }
            } else {
              members.push(newParticipant(ctx.deviceId, new Date()));
            }
            touch(lobby);
            updated(tx, 'participant_joined', { device_id: ctx.deviceId, rejoined: Boolean(me) });
            return toLobby(lobby, members);
          },
          { ...ctx, notFound: () => ((unknown = true), fail.lobbyNotFound()) },
        );
      } catch (err) {
        if (unknown) await joinGuard.recordFailure(ctx.deviceId);
        throw err;
      }
    },

    async 'lobby.leave'(req: RequestOf<'lobby.leave'>, ctx: CommandContext): Promise<ReplyOf<'lobby.leave'>> {
      return lobbies.run(
        { lobbyId: req.lobby_id },
        async (tx) => {
          const { lobby, members } = tx.loaded;
          const me = members.find((p) => p.deviceId === ctx.deviceId);
          if (!me || !isJoined(me) || lobby.state === 'closed') return { ok: true as const };
          const nextAdmin = adminAfterLeave(members, lobby.adminDeviceId, ctx.deviceId);
          me.status = 'left';
          me.leftAt = new Date();
          touch(lobby);
          await sessions.applyToActive(tx, { kind: 'participant_left', device_id: ctx.deviceId });
          updated(tx, 'participant_left', { device_id: ctx.deviceId }, [ctx.deviceId]);
          if (nextAdmin === null) {
            await close(tx, 'everyone left', [ctx.deviceId]);
          } else if (nextAdmin !== lobby.adminDeviceId) {
            const previous = lobby.adminDeviceId;
            lobby.adminDeviceId = nextAdmin;
            updated(tx, 'admin_changed', { admin_device_id: nextAdmin, previous_admin_device_id: previous });
          }
          return { ok: true as const };
        },
        ctx,
      );
    },

    async 'lobby.get'(req: RequestOf<'lobby.get'>): Promise<ReplyOf<'lobby.get'>> {
      let ref: { lobbyId: string } | { code: string };
      if (req.code !== undefined) {
        const code = normalizeCode(req.code);
        if (!isWellFormedCode(code)) throw fail.lobbyNotFound();
        ref = { code };
      } else {
        ref = { lobbyId: req.lobby_id! };
      }
      const { lobby, members } = await lobbies.store.view(ref);
      return toLobby(lobby, members);
    },

    async 'lobby.kick'(req: RequestOf<'lobby.kick'>, ctx: CommandContext): Promise<ReplyOf<'lobby.kick'>> {
      return lobbies.run(
        { lobbyId: req.lobby_id },
        async (tx) => {
          const { lobby } = tx;
          requireAdmin(lobby, ctx);
          requireNotClosed(lobby);
          if (req.target_device_id === ctx.deviceId) {
            throw fail.invalid('the admin cannot kick itself; use lobby.leave');
          }
          const target = joinedTarget(tx.loaded, req.target_device_id);
          await requireNotInSession(tx, target.deviceId, 'kicked');
          target.status = 'left';
          target.kicked = true;
          target.leftAt = new Date();
          touch(lobby);
          updated(tx, 'participant_kicked', { target_device_id: target.deviceId }, [target.deviceId]);
          return { ok: true as const };
        },
        ctx,
      );
    },

    async 'lobby.transfer_admin'(
      req: RequestOf<'lobby.transfer_admin'>,
      ctx: CommandContext,
    ): Promise<ReplyOf<'lobby.transfer_admin'>> {
      return lobbies.run(
        { lobbyId: req.lobby_id },
        (tx) => {
          const { lobby } = tx;
          requireAdmin(lobby, ctx);
          requireNotClosed(lobby);
          const target = joinedTarget(tx.loaded, req.target_device_id);
          if (target.deviceId !== lobby.adminDeviceId) {
            const previous = lobby.adminDeviceId;
            lobby.adminDeviceId = target.deviceId;
            touch(lobby);
            updated(tx, 'admin_changed', { admin_device_id: target.deviceId, previous_admin_device_id: previous });
          }
          return { ok: true as const, admin_device_id: lobby.adminDeviceId };
        },
        ctx,
      );
    },

    async 'lobby.presence'(req: RequestOf<'lobby.presence'>, ctx: CommandContext): Promise<ReplyOf<'lobby.presence'>> {
      // Each lobby the device has joined is updated in its own actor and transaction, in a fixed
      // order. A device is almost always in one lobby; a repeated report is a no-op anyway.
      const lobbyIds = await deps.lobbies.store.joinedLobbies(ctx.deviceId);
      const lobbies: string[] = [];
      for (const lobbyId of lobbyIds) {
        const open = await deps.lobbies
          .run({ lobbyId }, async (tx) => {
            if (tx.lobby.state === 'closed') return false;
            const me = tx.members.find((p) => p.deviceId === ctx.deviceId);
            if (!me || !isJoined(me)) return false;
            if (me.connected !== req.connected) {
              me.connected = req.connected;
              touch(tx.lobby);
              await sessions.applyToActive(tx, { kind: 'presence', device_id: ctx.deviceId, connected: req.connected });
              updated(tx, 'presence_changed', { device_id: ctx.deviceId, connected: req.connected });
            }
            return true;
          })
          .catch((err) => {
            // Gone since the lookup: nothing to report there.
            if (err instanceof ServiceError && err.code === ErrorCode.lobby_not_found) return false;
            throw err;
          });
        if (open) lobbies.push(lobbyId);
      }
      return { ok: true as const, lobbies };
    },
  } satisfies HandlerTable;
}
