/**
 * Every statement that touches a lobby's aggregate (lobbies, participants, measurement
 * sessions and their lobby_events), as named constants with bound parameters. Commands write
 * through `lobby_apply` (one round trip, one transaction; see the migration for why it locks,
 * then decides); reads are single statements without locks.
 */
import type { Sql } from '../db/sql.js';
import { json } from '../db/sql.js';
import { fail } from '../errors.js';
import { aggregateFromJson, lobbyFromJson, memberFromJson, type Aggregate, type LobbyRow, type ParticipantRow, type SessionRecord } from './model.js';
import type { Session } from '../measurement/model.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Ids the service issues are UUIDs; anything else cannot name a lobby or session. */
export const isUuid = (id: string): boolean => UUID.test(id);

/** A lobby's aggregate (with its active session and `$2` if given); no lock. */
const LOAD_BY_ID = `select lobby_state($1::uuid, $2::uuid) as state`;
/** The aggregate of the lobby that is not closed with this code (codes are unique among those). */
const LOAD_BY_CODE = `select lobby_state(id) as state from lobbies where code = $1 and state <> 'closed'`;
/** The aggregate of a session's lobby, with that session. */
const LOAD_BY_SESSION = `select lobby_state(lobby_id, id) as state from measurement_sessions where id = $1::uuid`;
/**
 * The aggregates of the lobbies with an unfinished session, newest first (the cache warmed at
 * start-up: the phones of those sessions are about to send their next steps).
 */
const LOAD_UNFINISHED = `
  select lobby_state(lobby_id, id) as state from measurement_sessions
  where state in ('created', 'running') order by updated_at desc limit $1`;
/** One session of a lobby (a step naming a session the aggregate has not loaded). */
const LOAD_SESSION = `select doc, version from measurement_sessions where id = $1::uuid and lobby_id = $2::uuid`;
/** The lobby's current version: confirms that a refusal decided from a cached state still holds. */
const VERSION = `select version from lobbies where id = $1::uuid`;
/** A command's writes; locks the lobby row first (see lobby_apply). */
const APPLY = `select lobby_apply($1::jsonb) as r`;
/** `lobby.get`: the lobby row and its joined participants in join order; no lock. */
const VIEW = `
  select to_jsonb(l) as lobby,
         coalesce((select jsonb_agg(to_jsonb(p) order by p.id) from participants p
                   where p.lobby_id = l.id and p.status = 'joined' and not p.kicked), '[]'::jsonb) as members
  from lobbies l`;
const VIEW_BY_ID = `${VIEW} where l.id = $1::uuid`;
const VIEW_BY_CODE = `${VIEW} where l.code = $1 and l.state <> 'closed'`;
/** Whether a device may read a lobby's history or sessions: joined or left, never kicked. */
const IS_MEMBER = `select exists (select 1 from participants where lobby_id = $1::uuid and device_id = $2 and not kicked) as member`;
/** A page of a lobby's event log, oldest first. */
const EVENTS_PAGE = `
  select id::float8 as id, type, payload, (extract(epoch from created_at) * 1000)::float8 as created_ms from lobby_events
  where lobby_id = $1::uuid and id > $2 order by id limit $3`;
/** The lobbies a device has joined (for `lobby.presence`), in a fixed order. */
const JOINED_LOBBIES = `
  select distinct lobby_id from participants
  where device_id = $1 and status = 'joined' and not kicked order by lobby_id`;
/** A session with its lobby, for `session_status`. */
const SESSION_DOC = `select doc, lobby_id from measurement_sessions where id = $1::uuid`;

/** One step that changed a session, for its timeline (`session_steps`). */
export interface StepRecord {
  session_id: string;
  at: string;
  step: string;
  device_id: string | null;
  phase_before: string;
  phase_after: string;
  detail?: Record<string, unknown> | null;
}

/** What `lobby_apply` takes (see the migration for its meaning). */
export interface Change {
  lobby_id: string;
  /** null: insert the lobby (lobby.create). */
  expect_version: number | null;
  lobby: Record<string, unknown>;
  members: Record<string, unknown>[];
  session?: {
    id: string;
    /** null: insert the session. */
    expect_version: number | null;
    job_id: string;
    state: string;
    phase: string;
    wake_at: string | null;
    doc: Session;
    created_at: string;
    updated_at: string;
  };
  events: Array<{
    session_id: string | null;
    type: string;
    payload: Record<string, unknown>;
    targets: string[];
    created_at: string;
    /** W3C trace context of the request that caused it (null when none). */
    traceparent: string | null;
  }>;
  /** Session steps to record in the session's timeline. */
  steps?: StepRecord[];
  /** Whether the v1 sink is on (its rows start undelivered). */
  sink: boolean;
  /** Replies kept for their Idempotency-Key (one per command of the change). */
  idempotency?: Array<{ device_id: string; key: string; subject: string; request_hash: string; reply: string }>;
}

export type Applied =
  | { ok: true; version: number; session_version: number | null; prev_event_id: number | null; event_ids: number[] }
  | { ok: false; reason: 'missing' }
  | { ok: false; reason: 'stale'; state: Record<string, unknown> };

export function createLobbyStore(sql: Sql) {
  async function loadWith(text: string, values: unknown[]): Promise<Aggregate | null> {
    const row = await sql.one<{ state: Record<string, unknown> | null }>(text, values);
    return row?.state ? aggregateFromJson(row.state) : null;
  }

  return {
    load(lobbyId: string, sessionId: string | null = null): Promise<Aggregate | null> {
      if (!isUuid(lobbyId)) return Promise.resolve(null);
      return loadWith(LOAD_BY_ID, [lobbyId, sessionId !== null && isUuid(sessionId) ? sessionId : null]);
    },
    loadByCode: (code: string) => loadWith(LOAD_BY_CODE, [code]),
    loadBySession(sessionId: string): Promise<Aggregate | null> {
      if (!isUuid(sessionId)) return Promise.resolve(null);
      return loadWith(LOAD_BY_SESSION, [sessionId]);
    },
    async loadUnfinished(limit: number): Promise<Aggregate[]> {
      const rows = await sql.query<{ state: Record<string, unknown> | null }>(LOAD_UNFINISHED, [limit]);
      return rows.flatMap((r) => (r.state ? [aggregateFromJson(r.state)] : []));
    },
    async loadSession(sessionId: string, lobbyId: string): Promise<SessionRecord | null> {
      if (!isUuid(sessionId)) return null;
      const row = await sql.one<{ doc: Session; version: number }>(LOAD_SESSION, [sessionId, lobbyId]);
      return row ? { doc: row.doc, version: Number(row.version) } : null;
    },
    async version(lobbyId: string): Promise<number | null> {
      const row = await sql.one<{ version: number }>(VERSION, [lobbyId]);
      return row ? Number(row.version) : null;
    },
    async apply(change: Change): Promise<Applied> {
      const row = await sql.one<{ r: Applied }>(APPLY, [json(change)]);
      return row!.r;
    },
    /** A lobby and its joined participants, by id or by code; throws `lobby_not_found`. */
    async view(ref: { lobbyId: string } | { code: string }): Promise<{ lobby: LobbyRow; members: ParticipantRow[] }> {
      if ('lobbyId' in ref && !isUuid(ref.lobbyId)) throw fail.lobbyNotFound();
      const row =
        'lobbyId' in ref
          ? await sql.one<{ lobby: Record<string, unknown>; members: Record<string, unknown>[] }>(VIEW_BY_ID, [ref.lobbyId])
          : await sql.one<{ lobby: Record<string, unknown>; members: Record<string, unknown>[] }>(VIEW_BY_CODE, [ref.code]);
      if (!row) throw fail.lobbyNotFound();
      return { lobby: lobbyFromJson(row.lobby), members: row.members.map(memberFromJson) };
    },
    async isMember(lobbyId: string, deviceId: string): Promise<boolean> {
      return (await sql.one<{ member: boolean }>(IS_MEMBER, [lobbyId, deviceId]))?.member === true;
    },
    async events(lobbyId: string, afterId: number, limit: number) {
      const rows = await sql.query<{ id: number; type: string; payload: Record<string, unknown>; created_ms: number }>(
        EVENTS_PAGE,
        [lobbyId, afterId, limit],
      );
      return rows.map((r) => ({ id: Number(r.id), type: r.type, payload: r.payload, createdAt: new Date(Number(r.created_ms)) }));
    },
    async joinedLobbies(deviceId: string): Promise<string[]> {
      return (await sql.query<{ lobby_id: string }>(JOINED_LOBBIES, [deviceId])).map((r) => r.lobby_id);
    },
    async session(sessionId: string): Promise<{ doc: Session; lobbyId: string } | null> {
      if (!isUuid(sessionId)) return null;
      const row = await sql.one<{ doc: Session; lobby_id: string }>(SESSION_DOC, [sessionId]);
      return row ? { doc: row.doc, lobbyId: row.lobby_id } : null;
    },
  };
}

export type LobbyStore = ReturnType<typeof createLobbyStore>;
