/**
 * Hand-written SQL on the hot path, through MikroORM's own connection pool (its knex client):
 * no second driver, and no ORM work per statement (no unit of work, no hydration, no
 * client-side formatting). Parameters are always bound (`$1`, `$2`, ...), never interpolated:
 * `em.execute` would inline them into the text, this sends them apart.
 *
 * Works the same on PostgreSQL (a `pg` client from the pool) and on the embedded PGlite (the
 * one PGlite instance): both answer `query(text, values)` with `{ rows }`. Every statement is a
 * single autocommit statement; the multi-statement work of a command lives in a plpgsql function
 * (see migrations), so a command costs one round trip and PGlite's single connection is never
 * held across awaits.
 */
import type { MikroORM } from '@mikro-orm/core';

/** The raw connection both drivers hand out: pg's `Client`, or PGlite. */
interface RawConnection {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  /** pg only: its protocol connection and socket. */
  connection?: { stream?: { cork?(): void; uncork?(): void } };
}

/** knex's tarn pool, as far as the metrics read it. */
interface TarnPool {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  max: number;
}

/** The knex client behind MikroORM's connection: its pool is what we borrow from. */
interface KnexClient {
  acquireConnection(): Promise<RawConnection>;
  releaseConnection(connection: RawConnection): Promise<void>;
  pool?: TarnPool;
}

export class Sql {
  private readonly client: KnexClient;
  /** Told of every statement that failed (metrics); must not throw. */
  onError: (err: unknown) => void = () => undefined;

  constructor(orm: MikroORM) {
    const knex = (orm.em.getConnection() as unknown as { getKnex(): { client: KnexClient } }).getKnex();
    this.client = knex.client;
  }

  /** Runs one statement with bound parameters; returns its rows. */
  async query<T = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T[]> {
    let connection: RawConnection;
    try {
      connection = await this.client.acquireConnection();
    } catch (err) {
      this.onError(err);
      throw err;
    }
    try {
      // pg writes Parse, Bind, Describe, Execute and Sync to the socket one by one, all within
      // query(): corked, they leave as one write (each write is a system call on the main thread).
      const socket = connection.connection?.stream;
      socket?.cork?.();
      const pending = connection.query(text, values);
      socket?.uncork?.();
      const result = await pending;
      return result.rows as T[];
    } catch (err) {
      this.onError(err);
      throw err;
    } finally {
      await this.client.releaseConnection(connection);
    }
  }

  /** The pool's connections now (null when the driver has no knex pool). */
  poolStats(): { used: number; free: number; pending: number; max: number } | null {
    const pool = this.client.pool;
    if (!pool || typeof pool.numUsed !== 'function') return null;
    return { used: pool.numUsed(), free: pool.numFree(), pending: pool.numPendingAcquires(), max: pool.max };
  }

  /** The first row, or undefined. */
  async one<T = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T | undefined> {
    return (await this.query<T>(text, values))[0];
  }
}

/** A JSON parameter: sent as text and cast in SQL (`$1::jsonb`), so arrays stay JSON arrays. */
export const json = (value: unknown): string => JSON.stringify(value);
