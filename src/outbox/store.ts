/**
 * Every statement the outbox relay runs on `lobby_events`, for one delivery column
 * (`published_at` for JetStream, `sink_delivered_at` for the v1 sink). Each one is a single
 * autocommit statement with bound parameters on MikroORM's own pool (`db.sql`), no ORM work.
 *
 * None of them locks a row: the relay only reads committed rows and sets its own column on rows
 * it has delivered; the lease (lease.ts) keeps other replicas' relays out.
 */
import type { Sql } from '../db/sql.js';
import { EVENT_COLUMNS, eventRowOf, type EventRecord, type EventRow, type OutboxColumn } from './event-row.js';

/** What the relay needs of `db.sql` (a test may wrap it to count statements). */
export type SqlRunner = Pick<Sql, 'query'>;

interface Statements {
  scan: string;
  lobbyAfter: string;
  olderInLobby: string;
  mark: string;
  pending: string;
}

/**
 * The statements of one column. The column name is the only text spliced in, and it comes from
 * the closed `OutboxColumn` union, never from input; every value is a bound parameter.
 */
function statementsFor(column: OutboxColumn): Statements {
  return {
    // The oldest undelivered rows the relay does not have yet: for a lobby in $2 (a JSON object
    // lobby id -> id), only those above that id (rows up to it are queued, or delivered and not
    // yet marked). Walks the partial index `lobby_events_unpublished`/`_undelivered` in id order;
    // each row costs one key lookup in $2, so it stays a plain index scan that stops at the limit.
    scan: `select ${EVENT_COLUMNS} from lobby_events e
      where e.${column} is null and e.id > coalesce(($2::jsonb ->> e.lobby_id::text)::int8, 0)
      order by e.id limit $1`,
    // One lobby's undelivered rows after the last one the relay knows (index `lobby_events_lobby`).
    lobbyAfter: `select ${EVENT_COLUMNS} from lobby_events e
      where lobby_id = $1 and id > $2 and ${column} is null order by id limit $3`,
    // Whether a lobby the relay has not met yet has undelivered rows older than a handed batch.
    olderInLobby: `select 1 as older from lobby_events where lobby_id = $1 and id < $2 and ${column} is null limit 1`,
    // Marks delivered rows: one statement per batch of acks.
    mark: `update lobby_events set ${column} = now() where id = any($1::int8[]) and ${column} is null`,
    pending: `select count(*)::int as n from lobby_events where ${column} is null`,
  };
}

const STATEMENTS: Record<OutboxColumn, Statements> = {
  published_at: statementsFor('published_at'),
  sink_delivered_at: statementsFor('sink_delivered_at'),
};

/** What the scan leaves out: lobby id -> the highest id the relay has of it. */
export type KnownTails = Map<string, number>;

export class OutboxStore {
  private readonly s: Statements;

  constructor(
    private readonly sql: SqlRunner,
    column: OutboxColumn,
  ) {
    this.s = STATEMENTS[column];
  }

  /** The oldest `limit` undelivered rows above the known tails, in id order. */
  async scan(limit: number, known: KnownTails): Promise<EventRow[]> {
    return (await this.sql.query<EventRecord>(this.s.scan, [limit, JSON.stringify(Object.fromEntries(known))])).map(eventRowOf);
  }

  /** Up to `limit` undelivered rows of a lobby with ids above `afterId`, in id order. */
  async lobbyAfter(lobbyId: string, afterId: number, limit: number): Promise<EventRow[]> {
    return (await this.sql.query<EventRecord>(this.s.lobbyAfter, [lobbyId, afterId, limit])).map(eventRowOf);
  }

  /** Whether the lobby has undelivered rows with ids below `beforeId`. */
  async hasOlder(lobbyId: string, beforeId: number): Promise<boolean> {
    return (await this.sql.query(this.s.olderInLobby, [lobbyId, beforeId])).length > 0;
  }

  /** Marks rows delivered (those not marked yet). */
  async mark(ids: number[]): Promise<void> {
    await this.sql.query(this.s.mark, [ids]);
  }

  /** How many rows are undelivered. */
  async pending(): Promise<number> {
    const rows = await this.sql.query<{ n: number }>(this.s.pending);
    return Number(rows[0]?.n ?? 0);
  }
}
