/**
 * Benchmark: `npm run bench:rebuild`. How fast `npm run replay -- --rebuild-stream` refills an
 * empty stream from the event log, by the number of publishes in flight. Creates a scratch
 * PostgreSQL database (PG_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
 * holding BENCH_REBUILD_EVENTS events (default 20000) over lobbies of 50 events, and a fresh
 * stream per run on NATS_URL (default nats://127.0.0.1:4222); removes both at the end.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { loadConfig } from '../../src/config.js';
import { Database } from '../../src/db/orm.js';
import { createLogger } from '../../src/log.js';
import { rebuildStream } from '../../src/replay/stream.js';

const EVENTS = Number(process.env.BENCH_REBUILD_EVENTS ?? 20_000);
const WINDOWS = [1, 64, 256, 1024];
const admin = process.env.PG_ADMIN_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const id = `bench_rebuild_${randomBytes(4).toString('hex')}`;
const databaseUrl = admin.replace(/\/[^/]*$/, `/${id}`);
const log = createLogger('warn');

/** Lobbies of 50 `lobby.step_update` events each, already published (as after losing the stream). */
const FILL = `
  with l as (
    insert into lobbies (id, code, creator_device_id, admin_device_id, state, max_participants, created_at, updated_at)
    select gen_random_uuid(), upper(substr(md5(g::text), 1, 6)), 'admin', 'admin', 'open', 8, now(), now()
    from generate_series(1, $1::int) g returning id)
  insert into lobby_events (lobby_id, type, payload, targets, created_at, published_at, sink_delivered_at)
  select l.id, 'lobby.step_update', jsonb_build_object('lobby_id', l.id, 'step_index', n % 7, 'source_device_id', 'admin'),
         '["guest-1", "guest-2", "guest-3"]'::jsonb, now(), now(), now()
  from l, generate_series(1, 50) n order by l.id, n`;

async function main(): Promise<void> {
  const server = new pg.Client({ connectionString: admin });
  await server.connect();
  await server.query(`create database ${id}`);
  const db = await Database.open({ kind: 'postgresql', url: databaseUrl }, log);
  const nc = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222', noAsyncTraces: true });
  const jsm = await jetstreamManager(nc);
  try {
    await db.sql.query(FILL, [Math.ceil(EVENTS / 50)]);
    const rows = Number((await db.sql.one<{ n: number }>('select count(*)::int as n from lobby_events'))?.n);
    console.log(`rebuild of ${rows} events (${Math.ceil(EVENTS / 50)} lobbies) into an empty stream, file storage`);
    console.log('in flight   ms      events/s');
    for (const window of WINDOWS) {
      const stream = `${id.toUpperCase()}_${window}`;
      const nats = loadConfig({ NATS_STREAM: stream, NATS_SUBJECT_PREFIX: `${id}_${window}` }).nats;
      try {
        const r = await rebuildStream({ nc, sql: db.sql, nats, log, window });
        if (r.published !== rows) throw new Error(`published ${r.published} of ${rows}`);
        console.log(`${String(window).padStart(9)}   ${String(r.ms).padEnd(6)}  ${Math.round((rows * 1000) / r.ms)}`);
      } finally {
        await jsm.streams.delete(stream).catch(() => undefined);
      }
    }
  } finally {
    await nc.close();
    await db.close();
    await server.query(`drop database ${id} with (force)`);
    await server.end();
  }
}

await main();
