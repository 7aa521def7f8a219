// How `db.sql` sorts failures, on a real PostgreSQL: a statement whose connection is killed under
// it is `DatabaseUnreachable` (unavailable), the server's answer to a bad statement is passed on
// as is, and the health monitor pings the server only for the former.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/db/orm.js';
import { DatabaseUnreachable, normalizeError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { createDatabase, waitFor, type TestDatabase } from '../helpers/infra.js';

const lines: Array<Record<string, unknown>> = [];
const log = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });

let tdb: TestDatabase;
let db: Database;
beforeAll(async () => {
  tdb = await createDatabase();
  db = await Database.open({ kind: 'postgresql', url: tdb.url }, log);
});
afterAll(async () => {
  await db?.close();
  await tdb?.drop();
});

describe('db.sql failures', () => {
  it('db - a statement whose connection is terminated under it is DatabaseUnreachable, then unavailable', async () => {
    const marker = `sleeper-${process.pid}-${Date.now()}`;
    const sleeping = db.sql.query(`select pg_sleep(30), $1::text as marker`, [marker]).then(
      () => null,
      (err: unknown) => err,
    );
    const admin = new pg.Client({ connectionString: tdb.url });
    await admin.connect();
    try {
      await waitFor(async () => {
        const r = await admin.query(
          `select pg_terminate_backend(pid) as done from pg_stat_activity where query like 'select pg_sleep(30)%' and datname = current_database() and pid <> pg_backend_pid()`,
        );
        return r.rows.length > 0;
      });
    } finally {
      await admin.end();
    }
    const err = await sleeping;
    expect(err).toBeInstanceOf(DatabaseUnreachable);
    expect((err as Error).cause).toMatchObject({ code: '57P01' });
    expect(normalizeError(err).code).toBe('unavailable');
    // Reported: the monitor pings (this joins that ping), finds the server up and says nothing.
    expect(await db.ping()).toBe(true);
    expect(lines.filter((l) => l.dependency === 'database')).toEqual([]);
    // The pool dropped the dead connection: the next statement works.
    expect(await db.sql.one<{ n: number }>('select 1 as n')).toEqual({ n: 1 });
  });

  it('db - the server refusing a statement is passed on as is: internal, not reported', async () => {
    const err = await db.sql.query(`select $1::uuid`, ['not-a-uuid']).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: '22P02' });
    expect(err).not.toBeInstanceOf(DatabaseUnreachable);
    expect(normalizeError(err).code).toBe('internal');
    expect(await db.health.explains(err)).toBe(false);
  });

  it('db - a server out of reach: unavailable at once, one line down, one back', async () => {
    const other = await Database.open({ kind: 'postgresql', url: tdb.url }, log);
    try {
      const settings = (other.orm.em.getConnection() as unknown as { getKnex(): { client: { connectionSettings: { port: number } } } }).getKnex()
        .client.connectionSettings;
      const port = settings.port;
      await other.sql.query('select 1');
      // Its pooled connections die, and new ones go to a port where nothing listens.
      await withAdmin((c) => c.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and application_name = ''`));
      settings.port = 1;
      for (let i = 0; i < 5; i++) {
        const err = await other.sql.query('select 1').then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(DatabaseUnreachable);
        expect(normalizeError(err).code).toBe('unavailable');
      }
      await waitFor(() => !other.health.reachable);
      settings.port = port;
      await waitFor(() => other.health.reachable, { timeoutMs: 5_000 });
      const said = lines.filter((l) => l.dependency === 'database');
      expect(said.map((l) => l.msg)).toEqual(['database unreachable', 'database reachable again']);
      expect(said[1]!.outage_ms).toBeGreaterThan(0);
      expect(await other.sql.one<{ n: number }>('select 1 as n')).toEqual({ n: 1 });
    } finally {
      await other.close();
    }
  });
});

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: tdb.url, application_name: 'test-admin' });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
