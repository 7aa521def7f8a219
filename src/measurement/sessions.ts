/**
 * Session steps: the session actor. Each step runs in its lobby's actor (src/lobby/actor.ts)
 * on the cached session and lobby: pure transition -> the session document, its broadcasts and
 * the lobby effect, written in one `lobby_apply` call that checks both the lobby's and the
 * session's versions -> reply. A conflict with another replica decides the step again on the
 * fresh state, so two replicas can never both apply a transition to one session version: each
 * deadline and trigger fires exactly once.
 */
import { EventName, type StepReply } from '../../subjects/index.js';
import type { Config } from '../config.js';
import type { Sql } from '../db/sql.js';
import { fail } from '../errors.js';
import type { Lobbies, RunOptions } from '../lobby/actor.js';
import type { Draft } from '../lobby/draft.js';
import type { LobbyRow, SessionRecord } from '../lobby/model.js';
import { joinedDeviceIds } from '../lobby/rules.js';
import { isUuid } from '../lobby/store.js';
import { toLobby } from '../lobby/view.js';
import type { SessionHooks } from './hooks.js';
import type { Session, Step, StepContext, TransitionResult } from './model.js';
import { sessionDevices, transition, wakeAt } from './transition.js';

/** Sessions whose wake time has passed, oldest first (index `measurement_sessions_wake`). */
const DUE = `select id, lobby_id from measurement_sessions where wake_at <= $1::timestamptz order by wake_at limit $2`;
/** The earliest wake time of any session. */
const NEXT_WAKE = `select (extract(epoch from min(wake_at)) * 1000)::float8 as wake_ms from measurement_sessions where wake_at is not null`;
/** Unfinished sessions per phase (metrics, at scrape time; the unfinished ones are few). */
const UNFINISHED_BY_PHASE = `select phase, count(*)::int as n from measurement_sessions
  where state in ('created', 'running') group by phase`;

/** A session due to wake, and its lobby (for log lines). */
export interface DueSession {
  sessionId: string;
  lobbyId: string;
}

/** What a tick did: its reply, and what fired (`timeout`, ..., `next_speaker`) if it changed the session. */
export interface TickResult {
  reply: StepReply;
  fired: string | null;
}

/** A step as the timeline records it: a protocol step, or the session's creation. */
export type TimelineStep = Step | { kind: 'create_session'; device_id: string };

/** What the timeline shows of a step besides who sent it: its data, or what a tick fired. */
function stepDetail(step: TimelineStep, result: TransitionResult): Record<string, unknown> | null {
  switch (step.kind) {
    case 'speaker_audio_ready':
      return step.audio_hash === undefined ? null : { audio_hash: step.audio_hash };
    case 'recording_uploaded':
      return { upload_name: step.upload_name };
    case 'error':
      return { error_code: step.error_code ?? null, error_message: step.error_message };
    case 'cancel':
      return { reason: step.reason ?? null };
    case 'presence':
      return { connected: step.connected };
    case 'lobby_closed':
      return { reason: step.reason };
    case 'tick': {
      // A deadline or a disconnect grace period that fired, or the automatic next speaker.
      const error = result.broadcasts.find((b) => b.event === EventName['measurement.error']);
      if (error) return { fired: error.data.error_code, missing_device_ids: error.data.missing_device_ids ?? [] };
      return { fired: 'next_speaker', current_speaker_index: result.session.current_speaker_index };
    }
    default:
      return null;
  }
}

export class Sessions implements SessionHooks {
  /** Called with the new wake time after a transition (re-arms the deadline scheduler). */
  onWake: (at: number) => void = () => undefined;

  constructor(
    private readonly lobbies: Lobbies,
    private readonly sql: Sql,
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
   * Runs one step in the session's actor and commits it. `shape` turns the step reply into the
   * command's reply (stored as is for an `Idempotency-Key`).
   */
  step<R = StepReply>(
    sessionId: string,
    step: Step,
    ctx?: RunOptions,
    shape: (r: StepReply) => R = (r) => r as R,
    /** Told of the timeline entry of each decision (the last one is what was committed). */
    recorded?: (detail: Record<string, unknown> | null) => void,
  ): Promise<R> {
    if (!isUuid(sessionId)) return Promise.reject(fail.sessionNotFound());
    return this.lobbies.run(
      { sessionId },
      async (tx) => {
        const record = await tx.session(sessionId);
        if (!record) throw fail.sessionNotFound();
        const result = transition(record.doc, step, this.stepContext(tx.lobby, joinedDeviceIds(tx.members)));
        const changed = this.persist(tx, record, result, step);
        recorded?.(changed ? stepDetail(step, result) : null);
        return shape({
          ok: true,
          session_id: sessionId,
          status: result.status,
          state: result.session.state,
          phase: result.session.phase,
        });
      },
      ctx,
    );
  }

  /**
   * Writes a transition's outcome into the command: the session (when it changed), its
   * broadcasts, and the lobby effect. `base` is the stored record it was decided from (null for
   * a new session).
   */
  persist(tx: Draft, base: SessionRecord | null, result: TransitionResult, step: TimelineStep, applyLobby = true): boolean {
    const session = result.session;
    const wake = wakeAt(session, { presence_grace_ms: this.config.measurement.presenceGraceMs });
    const changed = base === null || session !== base.doc;
    if (changed) {
      tx.writeSession(session.session_id, base, session, wake);
      tx.recordStep({
        session_id: session.session_id,
        step: step.kind,
        device_id: 'device_id' in step ? step.device_id : null,
        phase_before: base?.doc.phase ?? 'idle',
        phase_after: session.phase,
        detail: stepDetail(step, result),
      });
    }
    for (const b of result.broadcasts) {
      tx.emit({ sessionId: session.session_id, event: b.event, data: b.data, targets: b.targets });
    }
    if (result.lobby && applyLobby) {
      const { lobby, members } = tx;
      if (lobby.state !== 'closed') lobby.state = result.lobby.state;
      lobby.activeSessionId = result.lobby.active_session_id;
      lobby.updatedAt = new Date();
      tx.emit({
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
    return changed;
  }

  /** The lobby's unfinished session, if any. */
  private async active(tx: Draft): Promise<SessionRecord | null> {
    const id = tx.lobby.activeSessionId;
    if (!id) return null;
    const record = await tx.session(id);
    return record && (record.doc.state === 'created' || record.doc.state === 'running') ? record : null;
  }

  // ---- SessionHooks: lobby commands touching the session, in the same command ---------------

  async applyToActive(tx: Draft, step: Extract<Step, { kind: 'participant_left' | 'presence' | 'lobby_closed' }>): Promise<void> {
    const record = await this.active(tx);
    if (!record) return;
    const result = transition(record.doc, step, this.stepContext(tx.lobby, joinedDeviceIds(tx.members)));
    // Closing the lobby sets its state itself; the session's "back to open" does not apply.
    this.persist(tx, record, result, step, step.kind !== 'lobby_closed');
  }

  async listedDevices(tx: Draft): Promise<Set<string>> {
    const record = await this.active(tx);
    return new Set(record ? sessionDevices(record.doc) : []);
  }

  /** A session readable by members of its lobby (joined or left, not kicked). */
  async read(sessionId: string, deviceId: string | null): Promise<Session> {
    const found = await this.lobbies.store.session(sessionId);
    if (!found) throw fail.sessionNotFound();
    if (deviceId !== null && !(await this.lobbies.store.isMember(found.lobbyId, deviceId))) {
      throw fail.forbidden('only members of the lobby may read its sessions');
    }
    return found.doc;
  }

  /** Sessions whose wake time has passed (deadline, presence grace, next speaker), oldest first. */
  async due(now: number, limit = 100): Promise<DueSession[]> {
    const rows = await this.sql.query<{ id: string; lobby_id: string }>(DUE, [new Date(now).toISOString(), limit]);
    return rows.map((r) => ({ sessionId: r.id, lobbyId: r.lobby_id }));
  }

  /** Unfinished sessions per phase, database-wide (one grouped count; for metrics). */
  async unfinishedByPhase(): Promise<Record<string, number>> {
    const rows = await this.sql.query<{ phase: string; n: number }>(UNFINISHED_BY_PHASE);
    return Object.fromEntries(rows.map((r) => [r.phase, Number(r.n)]));
  }

  /** The earliest wake time of any session, or null. */
  async nextWake(): Promise<number | null> {
    const row = await this.sql.one<{ wake_ms: number | null }>(NEXT_WAKE);
    return row?.wake_ms === null || row?.wake_ms === undefined ? null : Number(row.wake_ms);
  }

  /**
   * Fires whatever is due for a session (a no-op when another replica already did). `ctx` gives
   * the tick its trace context (carried into the broadcasts it causes).
   */
  async tick(sessionId: string, ctx?: Pick<RunOptions, 'traceparent'>): Promise<TickResult> {
    let fired: string | null = null;
    const reply = await this.step(sessionId, { kind: 'tick' }, ctx, undefined, (detail) => {
      fired = typeof detail?.fired === 'string' ? detail.fired : null;
    });
    return { reply, fired };
  }
}
