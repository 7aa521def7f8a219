/**
 * The floors' SQL: the same transactions the service runs for a join, a leave and a session
 * step, issued bare through `pg` on the same database and tables. KEEP IN STEP with the
 * service's SQL (src/lobby/membership.ts, src/lobby/store.ts, src/measurement/sessions.ts,
 * src/outbox/unit-of-work.ts): a floor is only honest while it does the same work.
 *
 * One difference on purpose: bare events are written already published (`published_at` set),
 * so the running service's outbox relay does not pick them up and add load to the floor.
 */
import type pg from 'pg';

/** Locks the lobby a code names (join looks up and locks in one statement). */
const LOCK_LOBBY_BY_CODE = `select * from lobbies where code = $1 and state <> 'closed' for update`;
/** Locks the lobby row: serialises the lobby's writers (and so its event ids). */
const LOCK_LOBBY = `select * from lobbies where id = $1 for update`;
/** Every participant row of the lobby, in join order (the lobby JSON is built from them). */
const PARTICIPANTS = `select * from participants where lobby_id = $1 order by id asc`;
const INSERT_PARTICIPANT = `insert into participants
  (lobby_id, device_id, role, role_slot_id, role_slot_label, status, connected, kicked, joined_at, left_at)
  values ($1, $2, 'none', null, null, 'joined', true, false, $3, null) returning id`;
const REJOIN_PARTICIPANT = `update participants set status = 'joined', left_at = null where id = $1`;
const LEAVE_PARTICIPANT = `update participants set status = 'left', left_at = $2 where id = $1`;
/** `touch(lobby)`: every lobby change bumps updated_at. */
const TOUCH_LOBBY = `update lobbies set updated_at = $2 where id = $1`;
/** The outbox row of the broadcast, in the same transaction. */
const INSERT_EVENT = `insert into lobby_events
  (lobby_id, session_id, type, payload, targets, created_at, published_at, sink_delivered_at)
  values ($1, $2, $3, $4, $5, $6, $6, $6) returning id`;
/** A step's write of the session's new document and version. */
const UPDATE_SESSION = `update measurement_sessions set doc = $2, phase = $3, updated_at = $4, wake_at = $5,
  version = version + 1 where id = $1`;

interface LobbyRow {
  id: string;
  code: string;
  admin_device_id: string;
  creator_device_id: string;
  state: string;
  max_participants: number;
  created_at: Date;
  room: unknown;
  step_index: number | null;
  profile_id: string | null;
  active_session_id: string | null;
}
interface ParticipantRow {
  id: string;
  device_id: string;
  role: string;
  role_slot_id: string | null;
  role_slot_label: string | null;
  status: string;
  connected: boolean;
  kicked: boolean;
  joined_at: Date;
  left_at: Date | null;
}

/** The contract's Lobby object (what `toLobby` builds): the payload of every lobby.updated. */
function lobbyJson(l: LobbyRow, members: ParticipantRow[]) {
  return {
    lobby_id: l.id,
    code: l.code,
    admin_device_id: l.admin_device_id,
    creator_device_id: l.creator_device_id,
    state: l.state,
    max_participants: l.max_participants,
    created_at: l.created_at.toISOString(),
    room: l.room ?? null,
    step_index: l.step_index,
    profile_id: l.profile_id,
    active_session_id: l.active_session_id,
    participants: members
      .filter((p) => p.status === 'joined' && !p.kicked)
      .map((p) => ({
        device_id: p.device_id,
        role: p.role,
        role_slot_id: p.role_slot_id,
        role_slot_label: p.role_slot_label,
        status: p.status,
        connected: p.connected,
        joined_at: p.joined_at.toISOString(),
        left_at: p.left_at ? p.left_at.toISOString() : null,
      })),
  };
}

const joinedIds = (members: ParticipantRow[]) => members.filter((p) => p.status === 'joined' && !p.kicked).map((p) => p.device_id);

async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('begin');
    const out = await fn(c);
    await c.query('commit');
    return out;
  } catch (err) {
    await c.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

/** `lobby.join {code}` as `deviceId`: lock, load, insert or rejoin, touch, lobby.updated. */
export function bareJoin(pool: pg.Pool, code: string, deviceId: string): Promise<void> {
  return inTransaction(pool, async (c) => {
    const lobby = (await c.query<LobbyRow>(LOCK_LOBBY_BY_CODE, [code])).rows[0];
    if (!lobby) throw new Error(`bare join: no open lobby ${code}`);
    const members = (await c.query<ParticipantRow>(PARTICIPANTS, [lobby.id])).rows;
    const now = new Date();
    const me = members.find((p) => p.device_id === deviceId);
    if (me) {
      await c.query(REJOIN_PARTICIPANT, [me.id]);
      me.status = 'joined';
      me.left_at = null;
    } else {
      const id = (await c.query<{ id: string }>(INSERT_PARTICIPANT, [lobby.id, deviceId, now])).rows[0]!.id;
      members.push({ id, device_id: deviceId, role: 'none', role_slot_id: null, role_slot_label: null, status: 'joined', connected: true, kicked: false, joined_at: now, left_at: null });
    }
    await c.query(TOUCH_LOBBY, [lobby.id, now]);
    const data = { type: 'participant_joined', lobby_id: lobby.id, device_id: deviceId, rejoined: Boolean(me), lobby: lobbyJson(lobby, members) };
    await c.query(INSERT_EVENT, [lobby.id, null, 'lobby.updated', data, JSON.stringify(joinedIds(members)), now]);
  });
}

/** `lobby.leave {lobby_id}` as `deviceId`: lock, load, mark left, touch, lobby.updated. */
export function bareLeave(pool: pg.Pool, lobbyId: string, deviceId: string): Promise<void> {
  return inTransaction(pool, async (c) => {
    const lobby = (await c.query<LobbyRow>(LOCK_LOBBY, [lobbyId])).rows[0];
    if (!lobby) throw new Error(`bare leave: no lobby ${lobbyId}`);
    const members = (await c.query<ParticipantRow>(PARTICIPANTS, [lobby.id])).rows;
    const me = members.find((p) => p.device_id === deviceId && p.status === 'joined');
    if (!me) throw new Error(`bare leave: ${deviceId} is not joined to ${lobbyId}`);
    const now = new Date();
    const targets = joinedIds(members);
    await c.query(LEAVE_PARTICIPANT, [me.id, now]);
    me.status = 'left';
    me.left_at = now;
    await c.query(TOUCH_LOBBY, [lobby.id, now]);
    const data = { type: 'participant_left', lobby_id: lobby.id, device_id: deviceId, lobby: lobbyJson(lobby, members) };
    await c.query(INSERT_EVENT, [lobby.id, null, 'lobby.updated', data, JSON.stringify(targets), now]);
  });
}

/**
 * One session step's transaction at its barest: lock the lobby, write the session document
 * back (same size as the real one) with a new version, insert one broadcast. The service does
 * more per step (it also reads the participants and the session row, and often emits a
 * phase_update): the floor is what any step must cost at least.
 */
export function bareStep(pool: pg.Pool, session: BareSession): Promise<void> {
  return inTransaction(pool, async (c) => {
    await c.query(LOCK_LOBBY, [session.lobbyId]);
    const now = new Date();
    await c.query(UPDATE_SESSION, [session.id, session.doc, session.phase, now, session.wakeAt]);
    await c.query(INSERT_EVENT, [session.lobbyId, session.id, 'measurement.request_audio', session.broadcast, JSON.stringify(session.targets), now]);
  });
}

export interface BareSession {
  id: string;
  lobbyId: string;
  /** The session's real document (jsonb), written back unchanged. */
  doc: unknown;
  phase: string;
  wakeAt: Date | null;
  broadcast: Record<string, unknown>;
  targets: string[];
}

/** Session rows of the database to run `bareStep` on (taken from a scenario's sessions). */
export async function loadBareSessions(pool: pg.Pool, limit: number): Promise<BareSession[]> {
  const rows = (await pool.query<{ id: string; lobby_id: string; doc: { speakers?: { device_id: string }[] }; phase: string; wake_at: Date | null }>(
    `select id, lobby_id, doc, phase, wake_at from measurement_sessions order by created_at limit $1`,
    [limit],
  )).rows;
  return rows.map((r) => ({
    id: r.id,
    lobbyId: r.lobby_id,
    doc: r.doc,
    phase: r.phase,
    wakeAt: r.wake_at,
    broadcast: { session_id: r.id, audio_url: `http://127.0.0.1:8001/v1/measurement/audio?session_id=${r.id}` },
    targets: (r.doc.speakers ?? []).map((s) => s.device_id),
  }));
}
