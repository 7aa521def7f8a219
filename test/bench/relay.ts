/**
 * Relay micro-benchmark: `npx tsx test/bench/relay.ts`. Commits events straight into
 * `lobby_events` (one event per commit, each lobby's commits one after another, all lobbies at
 * once) and measures, per way of waking the relay:
 *   - hand: the commit's rows handed over (`relay.hand`), the fast path;
 *   - kick: `relay.notify()` after each commit, as UnitOfWork does today (a scan per kick);
 *   - poll: nothing; the periodic safety scan alone.
 * With live commits, events/s is the writers' pace; two more modes measure the relay alone, on
 * rows all committed beforehand:
 *   - burst: every commit's batch handed over at once;
 *   - backlog: one kick; the relay reads the backlog from the database.
 * Figures: events/s (first commit or hand to last broadcast), commit -> broadcast latency
 * p50/p90/p99 as a core subscriber sees it (the relay publishes after the ack of the previous
 * event of the lobby), the time until every row is marked, the relay's SQL statements and the
 * process's CPU.
 *
 * PostgreSQL: a fresh database on BENCH_PG_ADMIN (default the local server), dropped at the end.
 * NATS: NATS_URL or nats://127.0.0.1:4222 (a stream of its own, deleted at the end).
 * Knobs: BENCH_LOBBIES (200), BENCH_EVENTS (20 per lobby), BENCH_MODES (hand,kick,poll).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/nats-core';
import { allBroadcastsFilter, type Envelope } from '../../subjects/index.js';
import { loadConfig } from '../../src/config.js';
import { Database } from '../../src/db/orm.js';
import { createLogger } from '../../src/log.js';
import { EVENT_COLUMNS, eventRowOf, type EventRecord, type EventRow } from '../../src/outbox/event-row.js';
import { ensureStream, jetStreamDestination } from '../../src/outbox/jetstream.js';
import { OutboxRelay } from '../../src/outbox/relay.js';
import type { SqlRunner } from '../../src/outbox/store.js';
import { connectNats } from '../../src/transport/nats.js';

const LOBBIES = Number(process.env.BENCH_LOBBIES ?? 200);
const EVENTS = Number(process.env.BENCH_EVENTS ?? 20);
const MODES = (process.env.BENCH_MODES ?? 'hand,kick,poll,burst,backlog').split(',') as Mode[];
const ADMIN_URL = process.env.BENCH_PG_ADMIN ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
type Mode = 'hand' | 'kick' | 'poll' | 'burst' | 'backlog';

const id = `bench_relay_${randomBytes(4).toString('hex')}`;
const dbUrl = new URL(ADMIN_URL);
dbUrl.pathname = `/${id}`;
const env = {
  NATS_URL: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
  NATS_SUBJECT_PREFIX: `${id}.`,
  NATS_STREAM: id.toUpperCase(),
  DATABASE_URL: dbUrl.toString(),
  LOG_LEVEL: 'warn',
};

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ms = (n: number) => `${n.toFixed(1)} ms`;

async function main(): Promise<void> {
  await admin(`create database ${id}`);
  const config = loadConfig(env);
  const log = createLogger(config.logLevel);
  const db = await Database.open(config.database, log);
  const nc: NatsConnection = await connectNats(config.nats, log, 'bench-relay');
  try {
    const jsm = await ensureStream(nc, config.nats, log);
    const dest = jetStreamDestination(nc, jsm, config.nats, log);
    console.log(`relay bench: ${LOBBIES} lobbies x ${EVENTS} events, one event per commit; PostgreSQL + NATS (${env.NATS_URL})`);
    for (const mode of MODES) await run(mode, db, nc, dest);
    await jsm.streams.delete(config.nats.stream).catch(() => undefined);
  } finally {
    await nc.close();
    await db.close();
    await admin(`drop database if exists ${id} with (force)`);
  }
}

async function run(mode: Mode, db: Database, nc: NatsConnection, dest: ReturnType<typeof jetStreamDestination>) {
  const log = createLogger('warn');
  const statements = { reads: 0, marks: 0, other: 0 };
  const sql: SqlRunner = {
    query: (text, values) => {
      if (text.startsWith('update lobby_events')) statements.marks++;
      else if (text.includes('from lobby_events')) statements.reads++;
      else statements.other++;
      return db.sql.query(text, values);
    },
  };
  // burst / backlog: no scan may see the rows written before the clock starts (only the first
  // scan, right after the lease is taken, runs before that).
  const prepared = mode === 'burst' || mode === 'backlog';
  const relay = new OutboxRelay(db, dest, log, { holder: `bench-${mode}`, sql, ...(prepared ? { pollMs: 600_000 } : {}) });
  relay.start();
  while (!relay.isLeader || relay.scans === 0) await new Promise((r) => setTimeout(r, 10));

  const lobbies: string[] = [];
  for (let i = 0; i < LOBBIES; i++) {
    const lobbyId = crypto.randomUUID();
    await db.sql.query(
      `insert into lobbies (id, code, creator_device_id, admin_device_id, state, max_participants, created_at, updated_at)
       values ($1, $2, 'admin', 'admin', 'open', 8, now(), now())`,
      [lobbyId, lobbyId.slice(0, 6).toUpperCase()],
    );
    lobbies.push(lobbyId);
  }
  const mine = new Set(lobbies);

  // Times by event id. A scan may publish a row before its writer has noted the commit time.
  const committedAt = new Map<number, number>();
  const arrivedAt = new Map<number, number>();
  let lastArrival = 0;
  const total = LOBBIES * EVENTS;
  let done!: () => void;
  const allReceived = new Promise<void>((r) => (done = r));
  const sub = nc.subscribe(allBroadcastsFilter(env.NATS_SUBJECT_PREFIX), {
    callback: (_e, m) => {
      const b = m.json<Envelope>();
      if (!mine.has(b.lobby_id) || arrivedAt.has(b.id)) return;
      lastArrival = performance.now();
      arrivedAt.set(b.id, lastArrival);
      if (arrivedAt.size === total) done();
    },
  });
  await nc.flush();

  const write = async (lobbyId: string, i: number): Promise<EventRow[]> =>
    (
      await db.sql.query<EventRecord>(
        `insert into lobby_events as e (lobby_id, type, payload, targets, created_at, sink_delivered_at)
         values ($1, 'lobby.updated', $2::jsonb, '[]'::jsonb, now(), now()) returning ${EVENT_COLUMNS}`,
        [lobbyId, JSON.stringify({ type: 'step_changed', lobby_id: lobbyId, step_index: i })],
      )
    ).map(eventRowOf);

  // burst / backlog: everything committed before the clock starts.
  const prewritten: Array<{ lobbyId: string; prevEventId: number | null; rows: EventRow[] }> = [];
  if (prepared) {
    await Promise.all(
      lobbies.map(async (lobbyId) => {
        let prev: number | null = null;
        for (let i = 0; i < EVENTS; i++) {
          const rows = await write(lobbyId, i);
          prewritten.push({ lobbyId, prevEventId: prev, rows });
          prev = rows[0]!.id;
        }
      }),
    );
  }

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (mode === 'burst') {
    for (const b of prewritten) {
      committedAt.set(b.rows[0]!.id, t0);
      relay.hand(b);
    }
  } else if (mode === 'backlog') {
    for (const b of prewritten) committedAt.set(b.rows[0]!.id, t0);
    relay.kick();
  } else {
    await Promise.all(
      lobbies.map(async (lobbyId) => {
        let prev: number | null = null;
        for (let i = 0; i < EVENTS; i++) {
          const rows = await write(lobbyId, i);
          committedAt.set(rows[0]!.id, performance.now());
          if (mode === 'hand') relay.hand({ lobbyId, prevEventId: prev, rows });
          else if (mode === 'kick') relay.notify();
          prev = rows[0]!.id;
        }
      }),
    );
  }
  const committed = performance.now();
  await allReceived;
  // Counted outside the relay's statements.
  const unmarked = async () =>
    (await db.sql.query<{ n: number }>('select count(*)::int as n from lobby_events where published_at is null'))[0]!.n;
  while ((await unmarked()) > 0) await new Promise((r) => setTimeout(r, 5));
  const marked = performance.now();
  const cpu = process.cpuUsage(cpu0);
  sub.unsubscribe();
  await relay.stop();

  const latencies = [...arrivedAt].map(([eventId, at]) => Math.max(0, at - committedAt.get(eventId)!)).sort((a, b) => a - b);
  const seconds = (lastArrival - t0) / 1000;
  console.log(
    [
      `${mode.padEnd(7)}: ${Math.round(total / seconds)} events/s (${total} in ${ms(lastArrival - t0)}; commits/hands took ${ms(committed - t0)})`,
      `commit -> broadcast p50 ${ms(pct(latencies, 50))}, p90 ${ms(pct(latencies, 90))}, p99 ${ms(pct(latencies, 99))}, max ${ms(latencies.at(-1)!)}`,
      `all marked ${ms(marked - lastArrival)} after the last broadcast`,
      `relay SQL: ${statements.reads} reads, ${statements.marks} mark updates, ${statements.other} lease; ${relay.scans} scans`,
      `process CPU ${Math.round((cpu.user + cpu.system) / 1000)} ms (writers included)`,
    ].join('\n         '),
  );
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
