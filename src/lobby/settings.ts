/**
 * What a lobby is doing and shares: start, close, room snapshot, wizard step, profile, roles,
 * and the event log (CONTRACT section 3, "Lobby"). Writers lock the lobby row first.
 */
import { EVENTS_PAGE, ErrorCode, EventName, type EventData, type ReplyOf, type RequestOf } from '../../subjects/index.js';
import { ServiceError, fail } from '../errors.js';
import type { CommandContext } from '../transport/context.js';
import type { HandlerTable } from '../transport/dispatch.js';
import type { LobbyRow } from './model.js';
import { slotHolder } from './rules.js';
import { isUuid } from './store.js';
import { others, type LobbyDeps, type LobbyOps } from './ops.js';

/** Events of the commands by which the admin shares something with the others. */
type SharedEvent = 'lobby.room_snapshot' | 'lobby.step_update' | 'lobby.profile_update';

/** Largest `lobby.events` page in bytes: well inside NATS' default 1 MiB max_payload. */
const EVENTS_PAGE_MAX_BYTES = 512 * 1024;

export function settingsHandlers(deps: LobbyDeps, ops: LobbyOps) {
  const { lobbies } = deps;
  const { updated, requireAdmin, requireNotClosed, joinedTarget, touch, close, adminChange, requireNotInSession } = ops;

  /**
   * The "admin shares something" commands: keep it on the lobby (for late joiners) and tell
   * every other joined device, in one transaction.
   */
  function share<E extends SharedEvent, R>(
    lobbyId: string,
    ctx: CommandContext,
    event: E,
    keep: (lobby: LobbyRow) => void,
    data: Omit<EventData<E>, 'lobby_id' | 'source_device_id'>,
    reply: R,
  ): Promise<R> {
    return lobbies.run(
      { lobbyId },
      (tx) => {
        const loaded = adminChange(tx, ctx);
        keep(loaded.lobby);
        tx.emit({
          event,
          data: { lobby_id: loaded.lobby.id, ...data, source_device_id: ctx.deviceId },
          targets: others(loaded, ctx.deviceId),
        });
        // Returned from the decision: it is the reply an Idempotency-Key keeps.
        return reply;
      },
      ctx,
    );
  }

  return {
    async 'lobby.start'(req: RequestOf<'lobby.start'>, ctx: CommandContext): Promise<ReplyOf<'lobby.start'>> {
      return lobbies.run(
        { lobbyId: req.lobby_id },
        (tx) => {
          const { lobby } = tx;
          requireAdmin(lobby, ctx);
          if (lobby.state !== 'open') {
            throw new ServiceError(ErrorCode.lobby_not_open, `the lobby is ${lobby.state}`, { state: lobby.state });
          }
          lobby.state = 'measurement_running';
          touch(lobby);
          updated(tx, 'measurement_started', { device_id: ctx.deviceId });
          return { ok: true as const, state: lobby.state };
        },
        ctx,
      );
    },

    async 'lobby.close'(req: RequestOf<'lobby.close'>, ctx: CommandContext): Promise<ReplyOf<'lobby.close'>> {
      return lobbies.run(
        { lobbyId: req.lobby_id },
        async (tx) => {
          requireAdmin(tx.lobby, ctx);
          if (tx.lobby.state !== 'closed') await close(tx, 'closed by the admin');
          return { ok: true as const, state: 'closed' as const };
        },
        ctx,
      );
    },

    'lobby.room_snapshot': (req: RequestOf<'lobby.room_snapshot'>, ctx: CommandContext) =>
      share(
        req.lobby_id,
        ctx,
        EventName['lobby.room_snapshot'],
        (l) => (l.room = req.room),
        { room: req.room, shared_at: new Date().toISOString() },
        { ok: true } as ReplyOf<'lobby.room_snapshot'>,
      ),

    'lobby.step_update': (req: RequestOf<'lobby.step_update'>, ctx: CommandContext) =>
      share(
        req.lobby_id,
        ctx,
        EventName['lobby.step_update'],
        (l) => (l.stepIndex = req.step_index),
        { step_index: req.step_index },
        { ok: true, step_index: req.step_index } as ReplyOf<'lobby.step_update'>,
      ),

    'lobby.profile_update': (req: RequestOf<'lobby.profile_update'>, ctx: CommandContext) =>
      share(
        req.lobby_id,
        ctx,
        EventName['lobby.profile_update'],
        (l) => (l.profileId = req.profile_id),
        { profile_id: req.profile_id },
        { ok: true, profile_id: req.profile_id } as ReplyOf<'lobby.profile_update'>,
      ),

    async 'role.assign'(req: RequestOf<'role.assign'>, ctx: CommandContext): Promise<ReplyOf<'role.assign'>> {
      return lobbies.run(
        { lobbyId: req.lobby_id },
        async (tx) => {
          const { lobby, members } = tx.loaded;
          requireAdmin(lobby, ctx);
          requireNotClosed(lobby);
          const target = joinedTarget(tx.loaded, req.target_device_id);
          await requireNotInSession(tx, target.deviceId, 're-roled');
          const slotId = req.role === 'none' ? null : (req.role_slot_id ?? null);
          const slotLabel = req.role === 'none' ? null : (req.role_slot_label ?? null);
          const holder = slotHolder(members, req.role, slotId, target.deviceId);
          if (holder) {
            throw new ServiceError(ErrorCode.slot_taken, `slot ${slotId} is already held by another ${req.role}`, {
              role: req.role,
              role_slot_id: slotId,
              device_id: holder.deviceId,
            });
          }
          target.role = req.role;
          target.roleSlotId = slotId;
          target.roleSlotLabel = slotLabel;
          touch(lobby);
          updated(tx, 'role_assigned', {
            target_device_id: target.deviceId,
            role: req.role,
            role_slot_id: slotId,
            role_slot_label: slotLabel,
          });
          return { ok: true as const };
        },
        ctx,
      );
    },

    async 'lobby.events'(req: RequestOf<'lobby.events'>, ctx: CommandContext): Promise<ReplyOf<'lobby.events'>> {
      if (!isUuid(req.lobby_id)) throw fail.lobbyNotFound();
      const { store } = lobbies;
      // One statement each, no lock: the log only grows, and membership only matters as of now.
      const [lobby, member] = await Promise.all([
        store.version(req.lobby_id),
        ctx.trusted ? Promise.resolve(true) : store.isMember(req.lobby_id, ctx.deviceId),
      ]);
      if (lobby === null) throw fail.lobbyNotFound();
      if (!member) throw fail.forbidden('only members of the lobby may read its events');
      const rows = await store.events(req.lobby_id, req.after_id ?? 0, req.limit ?? EVENTS_PAGE.default);
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
      return { lobby_id: req.lobby_id, events };
    },
  } satisfies HandlerTable;
}
