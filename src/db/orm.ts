/**
 * ORM bootstrap: PostgreSQL for `postgresql://` URLs, the embedded PGlite database otherwise.
 * Migrations run at start-up. Callers get a fresh EntityManager fork per message through
 * `transaction()`; nothing uses the global EntityManager.
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { MikroORM, OptimisticLockError, RequestContext, TransactionContext, type Options } from '@mikro-orm/core';
import { Migrator } from '@mikro-orm/migrations';
import { PostgreSqlDriver, type EntityManager } from '@mikro-orm/postgresql';
import { PGlite } from '@electric-sql/pglite';
import { SafePGliteDriver } from './pglite.js';
import type { Logger } from 'pino';
import type { DatabaseTarget } from '../config.js';
import { entities } from './entities.js';
import { migrationsList } from './migrations.js';
import { Sql } from './sql.js';

export type Em = EntityManager;

/** MikroORM options for a target (also used by `mikro-orm.config.ts` for the CLI). */
export function ormOptions(target: DatabaseTarget, log?: Logger, pglite?: PGlite): Options {
  const common: Options = {
    entities,
    extensions: [Migrator],
    migrations: { migrationsList, transactional: true, allOrNothing: true, snapshot: false },
    allowGlobalContext: false,
    forceUtcTimezone: true,
    debug: false,
    logger: (message) => log?.debug({ component: 'orm' }, message),
  };
  if (target.kind === 'postgresql') {
    return {
      ...common,
      driver: PostgreSqlDriver,
      clientUrl: target.url,
      pool: { min: 0, max: 20, idleTimeoutMillis: 30_000 },
      driverOptions: { connection: { connectionTimeoutMillis: 5_000 } },
    } as Options;
  }
  const instance = pglite ?? openPglite(target.dir);
  return {
    ...common,
    driver: SafePGliteDriver,
    dbName: 'postgres',
    driverOptions: { connection: { pglite: () => instance } },
  } as Options;
}

function openPglite(dir: string | null): PGlite {
  if (!dir) return new PGlite();
  mkdirSync(dir, { recursive: true });
  return new PGlite(dir);
}

/** Key of the advisory lock that lets one replica at a time migrate (any constant will do). */
const MIGRATION_LOCK = 74_316_001;

/**
 * Runs pending migrations. On PostgreSQL, replicas starting together take turns: an advisory
 * lock is held (in a transaction of its own) while the migrator runs on other connections, so
 * the second replica finds the schema up to date. The embedded database has one process only.
 */
async function migrate(orm: MikroORM, target: DatabaseTarget) {
  const migrator = orm.getMigrator();
  if (target.kind !== 'postgresql') return migrator.up();
  return (orm.em.fork() as Em).transactional(async (em) => {
    await em.execute('select pg_advisory_xact_lock(?)', [MIGRATION_LOCK]);
    return migrator.up();
  });
}

/** SQLSTATEs worth one more try: serialization failure, deadlock. */
const RETRYABLE = new Set(['40001', '40P01']);

function isRetryable(err: unknown): boolean {
  if (err instanceof OptimisticLockError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && RETRYABLE.has(code);
}

export class Database {
  /** Hand-written statements with bound parameters, on the ORM's own pool (the hot path). */
  readonly sql: Sql;

  private constructor(
    readonly orm: MikroORM,
    readonly target: DatabaseTarget,
    /** The embedded database, owned here (MikroORM only borrows it). */
    private readonly pglite?: PGlite,
  ) {
    this.sql = new Sql(orm);
  }

  static async open(target: DatabaseTarget, log: Logger): Promise<Database> {
    const pglite = target.kind === 'embedded' ? openPglite(target.dir) : undefined;
    try {
      const orm = await MikroORM.init(ormOptions(target, log, pglite));
      const applied = await migrate(orm, target);
      if (applied.length) log.info({ migrations: applied.map((m) => m.name) }, 'database migrated');
      // The migrator's transaction switched MikroORM's AsyncLocalStorage on, and with it a
      // promise hook that costs every promise of the process (3-4% of the main thread under
      // load). Nothing on the command path uses it: switch it off (a later ORM transaction,
      // e.g. in a test, switches it on again by itself).
      for (const holder of [TransactionContext, RequestContext]) {
        (holder as unknown as { storage: AsyncLocalStorage<unknown> }).storage.disable();
      }
      return new Database(orm, target, pglite);
    } catch (err) {
      await pglite?.close().catch(() => undefined);
      throw err;
    }
  }

  get embedded(): boolean {
    return this.target.kind === 'embedded';
  }

  /**
   * Runs `fn` in one transaction on a fresh fork. Deadlocks, serialization failures and
   * optimistic-lock conflicts are retried (the whole function runs again on fresh state).
   */
  async transaction<T>(fn: (em: Em) => Promise<T>, attempts = 5): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const em = this.orm.em.fork() as Em;
      try {
        return await em.transactional(fn);
      } catch (err) {
        if (attempt >= attempts || !isRetryable(err)) throw err;
      }
    }
  }

  /** A read outside any transaction, on a fresh fork. */
  async read<T>(fn: (em: Em) => Promise<T>): Promise<T> {
    return fn(this.orm.em.fork() as Em);
  }

  async ping(): Promise<boolean> {
    try {
      await this.read((em) => em.execute('select 1'));
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.orm.close(true);
    await this.pglite?.close();
  }
}
