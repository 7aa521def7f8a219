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
 *
 * Failures are sorted here, by what happened (see `DatabaseUnreachable`): no connection from
 * the pool, a connection that died under the statement, or a connection-class SQLSTATE. Every
 * failure without a SQLSTATE of its own is reported to the health monitor.
 */
import type { MikroORM } from '@mikro-orm/core';
import { DatabaseUnreachable, isConnectionSqlState, sqlStateOf } from '../errors.js';
import { isReportable } from './health.js';

/** The raw connection both drivers hand out: pg's `Client`, or PGlite. */
interface RawConnection {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  /** pg only: its protocol connection and socket. */
  connection?: { stream?: { cork?(): void; uncork?(): void } };
  /** Set by knex when the pg client emitted `error` or `end`: it is dead. */
  __knex__disposed?: unknown;
  /** pg's own state: false after a connection error; `_ending`/`_ended` once it is closing or closed. */
  _queryable?: boolean;
  _ending?: boolean;
  _ended?: boolean;
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
  /** A connection outside the pool, with the pool's settings (pg only). */
  acquireRawConnection?(): Promise<RawConnection>;
  destroyRawConnection?(connection: RawConnection): Promise<void>;
  pool?: TarnPool;
}

/**
 * Pool connections only `Sql.priority` statements may take: the relay's lease renewal, scans
 * and marks never queue behind a burst of commands (a lease renewal that waited its turn
 * behind a thousand commands would pause every broadcast until it came).
 */
const RESERVED_CONNECTIONS = 2;

/** A counting semaphore, first come first served. */
class Gate {
  private active = 0;
  private readonly queue: Array<() => void> = [];
  constructor(private readonly capacity: number) {}
  get waiting(): number {
    return this.queue.length;
  }
  enter(): Promise<void> | undefined {
    if (this.active < this.capacity) {
      this.active++;
      return undefined;
    }
    return new Promise<void>((resolve) => this.queue.push(resolve));
  }
  /** Hands the slot to the next in line, or frees it. */
  leave(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.active--;
  }
}

/** Whether the driver has given up on this connection (the server closed it, the socket died). */
function isDead(c: RawConnection): boolean {
  return Boolean(c.__knex__disposed) || c._queryable === false || c._ending === true || c._ended === true;
}

export class Sql {
  private readonly client: KnexClient;
  /** Undefined until the pool exists; null when there is nothing to reserve (PGlite, a tiny pool). */
  private gate?: Gate | null;
  /** Told of every statement that failed (metrics); must not throw. */
  onError: (err: unknown) => void = () => undefined;
  /** Told about every failure that is not the server's answer to a statement (src/db/health.ts). */
  onFailure?: (err: unknown) => void;
  /** Told about every statement that succeeded, with when it was sent (ends an outage at once). */
  onSuccess?: (sentAt: number) => void;

  constructor(
    orm: MikroORM,
    /** A pool of real connections (PostgreSQL): pings use a fresh one of their own. */
    private readonly pooled = true,
  ) {
    const knex = (orm.em.getConnection() as unknown as { getKnex(): { client: KnexClient } }).getKnex();
    this.client = knex.client;
  }

  /** Statements that may use the reserved connections (the outbox relays' own work). */
  readonly priority: Pick<Sql, 'query'> = { query: (text, values) => this.query(text, values, true) };

  /** Runs one statement with bound parameters; returns its rows. */
  async query<T = Record<string, unknown>>(text: string, values: unknown[] = [], priority = false): Promise<T[]> {
    const gate = priority ? null : this.commandGate();
    const entering = gate?.enter();
    if (entering) await entering;
    try {
      return await this.run<T>(text, values);
    } finally {
      gate?.leave();
    }
  }

  /** Lets all but RESERVED_CONNECTIONS of a pool's connections be taken by ordinary statements. */
  private commandGate(): Gate | null {
    if (this.gate === undefined) {
      const max = this.pooled ? this.client.pool?.max : undefined;
      // Created once the pool exists (knex makes it when MikroORM connects).
      if (max === undefined) return null;
      this.gate = max > RESERVED_CONNECTIONS + 1 ? new Gate(max - RESERVED_CONNECTIONS) : null;
    }
    return this.gate;
  }

  private async run<T>(text: string, values: unknown[]): Promise<T[]> {
    const sentAt = Date.now();
    let connection: RawConnection;
    try {
      connection = await this.client.acquireConnection();
    } catch (err) {
      // The pool could not connect (refused, reset, timed out, the server starting up or
      // shutting down, no name resolution), or had no connection to give for too long.
      this.onError(err);
      this.onFailure?.(err);
      throw new DatabaseUnreachable('no connection to the database', { cause: err });
    }
    try {
      // pg writes Parse, Bind, Describe, Execute and Sync to the socket one by one, all within
      // query(): corked, they leave as one write (each write is a system call on the main thread).
      const socket = connection.connection?.stream;
      socket?.cork?.();
      let pending: Promise<{ rows: unknown[] }>;
      try {
        pending = connection.query(text, values);
      } finally {
        socket?.uncork?.();
      }
      const result = await pending;
      this.onSuccess?.(sentAt);
      return result.rows as T[];
    } catch (err) {
      this.onError(err);
      throw this.failed(err, connection);
    } finally {
      await this.client.releaseConnection(connection);
    }
  }

  /** The pool's connections now (null when the driver has no knex pool). */
  poolStats(): { used: number; free: number; pending: number; max: number } | null {
    const pool = this.client.pool;
    if (!pool || typeof pool.numUsed !== 'function') return null;
    // Statements waiting for a connection: at the pool, and before it (the reserve's gate).
    return { used: pool.numUsed(), free: pool.numFree(), pending: pool.numPendingAcquires() + (this.gate?.waiting ?? 0), max: pool.max };
  }

  /** The first row, or undefined. */
  async one<T = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T | undefined> {
    return (await this.query<T>(text, values))[0];
  }

  /**
   * Resolves once the server answers `select 1` on a connection of its own: a pool whose
   * connections all hang, or whose every slot is taken, does not make the server look down.
   */
  async probe(): Promise<void> {
    const { acquireRawConnection, destroyRawConnection } = this.client;
    if (!this.pooled || !acquireRawConnection || !destroyRawConnection) {
      await this.query('select 1');
      return;
    }
    const c = await acquireRawConnection.call(this.client);
    try {
      await c.query('select 1');
    } finally {
      await destroyRawConnection.call(this.client, c).catch(() => undefined);
    }
  }

  /** Sorts a failed statement's error: the server's answer as is, a lost connection as such. */
  private failed(err: unknown, connection: RawConnection): unknown {
    if (!isReportable(err)) return err;
    this.onFailure?.(err);
    const state = sqlStateOf(err);
    if (isDead(connection) || (state !== undefined && isConnectionSqlState(state))) {
      return new DatabaseUnreachable('the connection to the database was lost', { cause: err });
    }
    // No SQLSTATE, and the connection looks alive: the health monitor's ping decides.
    return err;
  }
}

/** A JSON parameter: sent as text and cast in SQL (`$1::jsonb`), so arrays stay JSON arrays. */
export const json = (value: unknown): string => JSON.stringify(value);
