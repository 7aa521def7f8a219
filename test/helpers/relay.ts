/**
 * A fixture for the outbox relay on its own: a fresh database (migrated), a NATS connection, the
 * test's stream and JetStream destination, rows written straight into `lobby_events` (as the
 * command path or "another replica" would), relays that count their statements, and a core
 * subscriber that timestamps every broadcast it receives.
 */
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { allBroadcastsFilter, type Envelope } from '../../subjects/index.js';
import { loadConfig } from '../../src/config.js';
import { Database } from '../../src/db/orm.js';
import { createLogger } from '../../src/log.js';
import { EVENT_COLUMNS, eventRowOf, type EventRecord, type EventRow, type HandedBatch } from '../../src/outbox/event-row.js';
import { ensureStream, jetStreamDestination } from '../../src/outbox/jetstream.js';
import { OutboxRelay, type Destination, type RelayOptions } from '../../src/outbox/relay.js';
import type { SqlRunner } from '../../src/outbox/store.js';
import { connectNats } from '../../src/transport/nats.js';
import { lobbyStream } from './lobby.js';
import { createTestEnv, deleteStream } from './service.js';

/** A broadcast as a core subscriber got it, with its arrival time (`performance.now()`). */
export interface Arrival {
  lobbyId: string;
  id: number;
  at: number;
}

export type RelayFixture = Awaited<ReturnType<typeof openRelayFixture>>;

export async function openRelayFixture() {
  const env = await createTestEnv();
  const config = loadConfig(env.env);
  const log = createLogger(config.logLevel);
  const db = await Database.open(config.database, log);
  const nc: NatsConnection = await connectNats(config.nats, log, 'relay-test');
  const jsm = await ensureStream(nc, config.nats, log);
  const jetStream = jetStreamDestination(nc, jsm, config.nats, log);

  /** Every statement the fixture's relays ran, in order. */
  const statements: string[] = [];
  const sql: SqlRunner = {
    query: (text, values) => {
      statements.push(text);
      return db.sql.query(text, values);
    },
  };

  const arrivals: Arrival[] = [];
  const sub: Subscription = nc.subscribe(allBroadcastsFilter(config.nats.subjectPrefix), {
    callback: (_err, m) => {
      const b = m.json<Envelope>();
      arrivals.push({ lobbyId: b.lobby_id, id: b.id, at: performance.now() });
    },
  });
  await nc.flush();

  const relays: OutboxRelay[] = [];
  let holders = 0;

  return {
    env,
    db,
    nc,
    jetStream,
    statements,
    arrivals,

    /** A started relay (its own lease holder id unless given) that runs its statements through `sql`. */
    relay(opts: Partial<RelayOptions> = {}, dest: Destination = jetStream): OutboxRelay {
      const r = new OutboxRelay(db, dest, log, { holder: `test-${++holders}`, sql, ...opts });
      relays.push(r);
      r.start();
      return r;
    },

    /** A lobby row (events reference it). */
    async lobby(): Promise<string> {
      const id = crypto.randomUUID();
      await db.sql.query(
        `insert into lobbies (id, code, creator_device_id, admin_device_id, state, max_participants, created_at, updated_at)
         values ($1, $2, 'admin', 'admin', 'open', 8, now(), now())`,
        [id, id.slice(0, 6).toUpperCase()],
      );
      return id;
    },

    /** Commits `n` events of a lobby in one statement; returns them as the command path would. */
    async write(lobbyId: string, n = 1): Promise<EventRow[]> {
      const rows = await db.sql.query<EventRecord>(
        `insert into lobby_events as e (lobby_id, type, payload, targets, created_at, sink_delivered_at)
         select $1, 'lobby.updated', jsonb_build_object('n', g), '[]'::jsonb, now(), now()
         from generate_series(1, $2::int) g
         returning ${EVENT_COLUMNS}`,
        [lobbyId, n],
      );
      return rows.map(eventRowOf).sort((a, b) => a.id - b.id);
    },

    /** The batch the command path would hand over for `rows` (committed right after `prev`). */
    batch(lobbyId: string, rows: EventRow[], prev: EventRow[] | number | null = null): HandedBatch {
      const prevEventId = Array.isArray(prev) ? (prev.at(-1)?.id ?? null) : prev;
      return { lobbyId, prevEventId, rows };
    },

    /** Marks rows published, as a relay of another replica would have. */
    async markPublished(rows: EventRow[]): Promise<void> {
      await db.sql.query('update lobby_events set published_at = now() where id = any($1::int8[])', [rows.map((r) => r.id)]);
    },

    /** Ids received by the core subscriber for a lobby, in arrival order. */
    received(lobbyId: string): number[] {
      return arrivals.filter((a) => a.lobbyId === lobbyId).map((a) => a.id);
    },

    /** Ids of the lobby's messages in the stream, in stream order. */
    async stored(lobbyId: string): Promise<number[]> {
      return (await lobbyStream(nc, env.stream, env.prefix, lobbyId)).map((m) => m.body.id);
    },

    /** The lobby's logged ids, in id order. */
    async logged(lobbyId: string): Promise<number[]> {
      const rows = await db.sql.query<{ id: string }>('select id from lobby_events where lobby_id = $1 order by id', [lobbyId]);
      return rows.map((r) => Number(r.id));
    },

    async unpublished(): Promise<number> {
      const rows = await db.sql.query<{ n: number }>('select count(*)::int as n from lobby_events where published_at is null');
      return rows[0]!.n;
    },

    async close(): Promise<void> {
      for (const r of relays) await r.stop().catch(() => undefined);
      sub.unsubscribe();
      await nc.close().catch(() => undefined);
      await db.close().catch(() => undefined);
      await deleteStream(env).catch(() => undefined);
      await env.db.drop();
    },
  };
}
