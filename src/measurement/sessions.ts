/**
 * Session persistence and step execution: load -> pure transition -> write the session, its
 * broadcasts and the lobby effect in one transaction -> reply.
 *
 * Every step locks the lobby row first (the same lock lobby commands take), so a lobby's
 * writers are serialised and its event ids commit in order; the session row's version column
 * additionally guarantees that two replicas can never both apply a transition to the same
 * version (a conflict reruns the step on fresh state).
 */
import { EventName, type StepReply } from '../../subjects/index.js';
import type { Config } from '../config.js';
import { SessionEntity, type LobbyRow, type ParticipantRow, type SessionRow } from '../db/entities.js';
import type { Database, Em } from '../db/orm.js';
import { fail } from '../errors.js';
import { joinedDeviceIds } from '../lobby/rules.js';
import { isUuid, loadParticipants, lockLobby } from '../lobby/store.js';
import { toLobby } from '../lobby/view.js';
import type { Tx, UnitOfWork } from '../outbox/unit-of-work.js';
import type { CommandContext } from '../transport/context.js';
import { Mailboxes } from './actor.js';
import type { SessionHooks } from './hooks.js';
import type { Session, Step, StepContext, TransitionResult } from './model.js';
import { sessionDevices, transition, wakeAt } from './transition.js';

interface Loaded {
  lobby: LobbyRow;
  /** Every participant row of the lobby (kicked ones included), in join order. */
  members: ParticipantRow[];
}

export class Sessions implements SessionHooks {
  readonly mailboxes = new Mailboxes();
  /** Called with the new wake time after a transition (re-arms the deadline scheduler). */
  onWake: (at: number) => void = () => undefined;

  constructor(
    private readonly db: Database,
    private readonly uow: UnitOfWork,
    private readonly config: Config,
  ) {}

  /** `lobbyDeviceIds`: the lobby's joined devices in join order (`joinedDeviceIds(members)`). */
  stepContext(lobby: LobbyRow, lobbyDeviceIds: string[], now = Date.now()): StepContext {
    return {
      now,
      admin_device_id: lobby.adminDeviceId,
      lobby_device_ids: lobbyDeviceIds,
      public_base_url: this.config.http.publicBaseUrl,
      presence_grace_ms: this.config.measurement.presenceGraceMs,
    };
  }

  /**
   * Runs one step through the session's mailbox and its own transaction. `shape` turns the
   * step reply into the command's reply (stored as is for an `Idempotency-Key`).
   */
  step<R = StepReply>(
    sessionId: string,
    step: Step,
    ctx?: CommandContext,
    shape: (r: StepReply) => R = (r) => r as R,
  ): Promise<R> {
    if (!isUuid(sessionId)) return Promise.reject(fail.sessionNotFound());
    return this.mailboxes.send(sessionId, () =>
      this.uow.run(async (tx) => {
        const lobbyId = await lobbyOf(tx.em, sessionId);
        const lobby = await lockLobby(tx.em, lobbyId);
        const loaded: Loaded = { lobby, members: await loadParticipants(tx.em, lobbyId) };
        const row = await tx.em.findOneOrFail(SessionEntity, { id: sessionId });
        const result = transition(row.doc, step, this.stepContext(lobby, joinedDeviceIds(loaded.members)));
        await this.persist(tx, loaded, row, result);
        return shape({
          ok: true,
          session_id: sessionId,
          status: result.status,
          state: result.session.state,
          phase: result.session.phase,
        });
      }, ctx?.idempotency),
    );
  }

  /** Writes a transition's outcome: session row, broadcasts, lobby effect. */
  async persist(tx: Tx, loaded: Loaded, row: SessionRow, result: TransitionResult, applyLobby = true): Promise<void> {
    const session = result.session;
    const wake = wakeAt(session, { presence_grace_ms: this.config.measurement.presenceGraceMs });
    const wakeDate = wake === null ? null : new Date(wake);
    if (session !== row.doc) {
      row.doc = session;
      row.state = session.state;
      row.phase = session.phase;
      row.updatedAt = new Date(session.updated_at);
    }
    if ((row.wakeAt?.getTime() ?? null) !== wake) row.wakeAt = wakeDate;
    for (const b of result.broadcasts) {
      tx.emit({ lobbyId: session.lobby_id, sessionId: session.session_id, event: b.event, data: b.data, targets: b.targets });
    }
    if (result.lobby && applyLobby) {
      const { lobby } = loaded;
      if (lobby.state !== 'closed') lobby.state = result.lobby.state;
      lobby.activeSessionId = result.lobby.active_session_id;
      lobby.updatedAt = new Date();
      const { members } = loaded;
      tx.emit({
        lobbyId: lobby.id,
        event: EventName['lobby.updated'],
        data: {
          type: 'state_changed',
          lobby_id: lobby.id,
          state: lobby.state,
          active_session_id: lobby.activeSessionId ?? null,
          lobby: toLobby(lobby, members),
        },
        targets: joinedDeviceIds(members),
      });
    }
    if (wake !== null) this.onWake(wake);
  }

  /** The lobby's unfinished session row, if any. */
  private async active(em: Em, lobby: LobbyRow): Promise<SessionRow | null> {
    if (!lobby.activeSessionId) return null;
    const row = await em.findOne(SessionEntity, { id: lobby.activeSessionId });
    return row && (row.state === 'created' || row.state === 'running') ? row : null;
  }

  // ---- SessionHooks: lobby commands touching the session, in their own transaction --------

  async applyToActive(
    tx: Tx,
    loaded: Loaded,
    step: Extract<Step, { kind: 'participant_left' | 'presence' | 'lobby_closed' }>,
  ): Promise<void> {
    const row = await this.active(tx.em, loaded.lobby);
    if (!row) return;
    const result = transition(row.doc, step, this.stepContext(loaded.lobby, joinedDeviceIds(loaded.members)));
    // Closing the lobby sets its state itself; the session's "back to open" does not apply.
    await this.persist(tx, loaded, row, result, step.kind !== 'lobby_closed');
  }

  async listedDevices(tx: Tx, lobby: LobbyRow): Promise<Set<string>> {
    const row = await this.active(tx.em, lobby);
    return new Set(row ? sessionDevices(row.doc) : []);
  }

  /** A session readable by members of its lobby (joined or left, not kicked). */
  async read(sessionId: string, deviceId: string | null): Promise<Session> {
    if (!isUuid(sessionId)) throw fail.sessionNotFound();
    return this.db.read(async (em) => {
      const row = await em.findOne(SessionEntity, { id: sessionId });
      if (!row) throw fail.sessionNotFound();
      if (deviceId !== null) {
        const members = await loadParticipants(em, row.lobbyId);
        const me = members.find((m) => m.deviceId === deviceId);
        if (!me || me.kicked) throw fail.forbidden('only members of the lobby may read its sessions');
      }
      return row.doc;
    });
  }

  /** Sessions whose wake time has passed (deadline or presence grace), oldest first. */
  async due(now: number, limit = 100): Promise<string[]> {
    return this.db.read(async (em) => {
      const rows = await em.find(
        SessionEntity,
        { wakeAt: { $lte: new Date(now) } },
        { fields: ['id'], orderBy: { wakeAt: 'asc' }, limit },
      );
      return rows.map((r) => r.id);
    });
  }

  /** The earliest wake time of any session, or null. */
  async nextWake(): Promise<number | null> {
    return this.db.read(async (em) => {
      const row = await em.findOne(SessionEntity, { wakeAt: { $ne: null } }, { fields: ['wakeAt'], orderBy: { wakeAt: 'asc' } });
      return row?.wakeAt ? row.wakeAt.getTime() : null;
    });
  }

  /** Fires whatever is due for a session (a no-op when another replica already did). */
  async tick(sessionId: string): Promise<StepReply> {
    return this.step(sessionId, { kind: 'tick' });
  }
}

async function lobbyOf(em: Em, sessionId: string): Promise<string> {
  const rows = await em.execute<{ lobby_id: string }[]>('select lobby_id from measurement_sessions where id = ?', [sessionId]);
  if (!rows[0]) throw fail.sessionNotFound();
  return rows[0].lobby_id;
}
