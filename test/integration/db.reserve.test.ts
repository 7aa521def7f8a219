// The pool keeps connections for the outbox relays: when commands take every other connection
// (here: all blocked on a row lock held elsewhere), the relay's statements (lease renewal, scans,
// marks) still get a connection at once, so broadcasts never pause behind a burst of commands.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/infra.js';
import { startHarness } from '../helpers/service.js';

let h: Awaited<ReturnType<typeof startHarness>>;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

async function lockWaiters(): Promise<number> {
  const r = await h.app.db.sql.priority.query<{ n: number }>(
    "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
  );
  return r[0]!.n;
}

describe('database pool reserve', () => {
  it('db - with every ordinary connection blocked, a relay statement still runs at once; the rest queue and then finish', async () => {
    const { lobby_id } = await h.client.call('lobby.create', 'reserve-admin', {});
    const sql = h.app.db.sql;
    const max = sql.poolStats()!.max;
    const holder = new pg.Client({ connectionString: h.env.databaseUrl });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select id from lobbies where id = $1::uuid for update', [lobby_id]);
      // More ordinary statements than the pool has connections, all waiting for that lock.
      const blocked = Array.from({ length: max + 5 }, () => sql.query('select id from lobbies where id = $1::uuid for update', [lobby_id]));
      // All but the reserved connections are taken, by statements waiting for the lock.
      await waitFor(async () => (await lockWaiters()) === max - 2, { timeoutMs: 10_000, message: 'ordinary statements holding connections' });
      expect(sql.poolStats()!.pending).toBeGreaterThanOrEqual(7);

      let ordinaryDone = false;
      const ordinary = sql.query('select 1').then(() => (ordinaryDone = true));
      // A relay statement gets a reserved connection without waiting for the lock to go.
      const t0 = performance.now();
      const rows = await sql.priority.query<{ one: number }>('select 1 as one');
      expect(rows).toEqual([{ one: 1 }]);
      expect(performance.now() - t0).toBeLessThan(2_000);
      // An ordinary one waits its turn behind the blocked ones.
      expect(ordinaryDone).toBe(false);

      await holder.query('rollback');
      await Promise.all([...blocked, ordinary]);
      expect(ordinaryDone).toBe(true);
      expect(sql.poolStats()!.pending).toBe(0);
    } finally {
      await holder.end().catch(() => undefined);
    }
  });
});
