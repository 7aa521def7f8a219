/**
 * One `lobby_events` row as the outbox relays it: plain data, no ORM entity, so the relay can
 * read rows with hand-written SQL and the command path can hand it the rows it just inserted.
 */

export interface EventRow {
  /** From one sequence: increases strictly within a lobby, in commit order (the lobby row lock). */
  id: number;
  lobbyId: string;
  sessionId: string | null;
  /** The broadcast event name (`lobby.updated`, `measurement.start_recording`, ...). */
  type: string;
  /** The broadcast's `data`. */
  payload: Record<string, unknown>;
  /** Device ids the broadcast is meant for. */
  targets: string[];
  createdAt: Date;
  /** W3C `traceparent` of the request (or deadline) that caused the event; null if none was recorded. */
  traceparent: string | null;
  /**
   * On the first row of a handed batch only: the request that caused it and when it reached the
   * dispatcher (`performance.now()` of this process), for the request -> broadcast latency.
   * Rows read from the database have none.
   */
  origin?: EventOrigin;
}

/** Which request caused a handed batch, and when it arrived. */
export interface EventOrigin {
  /** The command's subject (aliases under their target). */
  subject: string;
  /** `performance.now()` when the request reached the dispatcher. */
  receivedAt: number;
}

/**
 * A commit's events of one lobby, handed to the relay right after the commit (`relay.hand`).
 */
export interface HandedBatch {
  lobbyId: string;
  /** Id of this lobby's newest event committed BEFORE this batch (null: none before). */
  prevEventId: number | null;
  /** This commit's rows of that lobby, ascending ids. */
  rows: EventRow[];
}

/** The column that records delivery to a destination (null: not delivered yet). */
export type OutboxColumn = 'published_at' | 'sink_delivered_at';

/** The columns `EVENT_COLUMNS` selects, as both drivers return them. */
export interface EventRecord {
  /** int8: a string from `pg`, a bigint or number from PGlite. */
  id: string | number | bigint;
  lobby_id: string;
  session_id: string | null;
  type: string;
  payload: Record<string, unknown>;
  targets: string[];
  /** Milliseconds since the epoch (float8): `pg` would hand timestamptz over as text. */
  created_ms: number;
  traceparent: string | null;
}

/** The select list that yields an `EventRecord`, for `lobby_events` aliased `e`. */
export const EVENT_COLUMNS =
  'e.id, e.lobby_id, e.session_id, e.type, e.payload, e.targets, extract(epoch from e.created_at)::float8 * 1000 as created_ms, e.traceparent';

export function eventRowOf(r: EventRecord): EventRow {
  return {
    id: Number(r.id),
    lobbyId: r.lobby_id,
    sessionId: r.session_id,
    type: r.type,
    payload: r.payload,
    targets: r.targets,
    // Truncated to the millisecond like a parsed timestamp, with half a microsecond of slack:
    // the float may land a hair below the stored value.
    createdAt: new Date(Math.floor(r.created_ms + 0.0005)),
    traceparent: r.traceparent ?? null,
  };
}
