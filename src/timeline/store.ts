/**
 * The reads behind a session timeline: the session document, its recorded steps and its
 * broadcasts. Single statements with bound parameters on the service's pool (`db.sql`); no locks
 * (a timeline is a picture of what has committed).
 */
import type { SessionTimeline } from '../../subjects/index.js';
import type { Sql } from '../db/sql.js';
import { isUuid } from '../lobby/store.js';
import type { Session } from '../measurement/model.js';
import { timeline, type EventInput, type StepInput } from './model.js';

/** The session and its lobby. */
const SESSION = `select doc, lobby_id from measurement_sessions where id = $1::uuid`;
/** Every recorded step of the session, in the order they were written (index `session_steps_session`). */
const STEPS = `
  select id::float8 as id, extract(epoch from at)::float8 * 1000 as at_ms, step, device_id, phase_before, phase_after, detail
  from session_steps where session_id = $1::uuid order by id`;
/** The session's broadcasts: its lobby's events that name it (walks index `lobby_events_lobby`). */
const EVENTS = `
  select id::float8 as id, type, payload, targets, extract(epoch from created_at)::float8 * 1000 as created_ms
  from lobby_events where lobby_id = $2::uuid and session_id = $1::uuid order by id`;

interface StepRecord {
  id: number;
  at_ms: number;
  step: string;
  device_id: string | null;
  phase_before: string;
  phase_after: string;
  detail: Record<string, unknown> | null;
}

interface EventRecord {
  id: number;
  type: string;
  payload: Record<string, unknown>;
  targets: string[];
  created_ms: number;
}

/** Timestamps as stored (microseconds) -> the millisecond they were taken in (rounding off float noise). */
const ms = (v: number) => Math.floor(Number(v) + 0.0005);

export function createTimelineStore(sql: Pick<Sql, 'query' | 'one'>) {
  return {
    /** The session's timeline, or null when there is no such session. */
    async timeline(sessionId: string): Promise<SessionTimeline | null> {
      if (!isUuid(sessionId)) return null;
      const session = await sql.one<{ doc: Session; lobby_id: string }>(SESSION, [sessionId]);
      if (!session) return null;
      const [steps, events] = await Promise.all([
        sql.query<StepRecord>(STEPS, [sessionId]),
        sql.query<EventRecord>(EVENTS, [sessionId, session.lobby_id]),
      ]);
      return timeline({
        session: session.doc,
        steps: steps.map(
          (s): StepInput => ({
            id: Number(s.id),
            atMs: ms(s.at_ms),
            step: s.step,
            device_id: s.device_id,
            phase_before: s.phase_before,
            phase_after: s.phase_after,
            detail: s.detail,
          }),
        ),
        events: events.map(
          (e): EventInput => ({ id: Number(e.id), type: e.type, payload: e.payload, targets: e.targets, createdMs: ms(e.created_ms) }),
        ),
      });
    },
  };
}

export type TimelineStore = ReturnType<typeof createTimelineStore>;
