import { afterAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/db/orm.js';
import { migrationsList } from '../../src/db/migrations.js';
import { createLogger } from '../../src/log.js';
import { createDatabase, withPgClient, type TestDatabase } from '../helpers/infra.js';

let db: TestDatabase | undefined;
afterAll(async () => {
  await db?.drop();
});

describe('migrations', () => {
  it('migrations - replicas starting together on an empty database each come up, migrated once', async () => {
    db = await createDatabase();
    const target = { kind: 'postgresql' as const, url: db.url };
    const opened = await Promise.all([1, 2, 3, 4].map(() => Database.open(target, createLogger('silent'))));
    await Promise.all(opened.map((d) => d.close()));
    const rows = await withPgClient(db.url, (c) => c.query<{ name: string }>('select name from mikro_orm_migrations'));
    expect(rows.rows.map((r) => r.name)).toEqual(migrationsList.map((m) => m.name));
  });
});
