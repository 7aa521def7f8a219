/**
 * A named, time-limited lease in the database: at most one holder at a time across replicas.
 * The database clock decides expiry, so replicas' clocks need not agree.
 */
import type { SqlRunner } from './store.js';

/**
 * Takes the lease if it is free, expired or already ours, and renews it. One autocommit
 * statement: the upsert locks the lease row for its own duration only.
 */
const ACQUIRE = `
  insert into leases (name, holder, expires_at)
  values ($1, $2, now() + $3::int8 * interval '1 millisecond')
  on conflict (name) do update set holder = excluded.holder, expires_at = excluded.expires_at
  where leases.holder = excluded.holder or leases.expires_at < now()
  returning holder`;

/** Gives the lease up, if it is still ours. */
const RELEASE = 'delete from leases where name = $1 and holder = $2';

export class Lease {
  private heldUntil = 0;

  constructor(
    private readonly sql: SqlRunner,
    private readonly name: string,
    private readonly holder: string,
    private readonly ttlMs: number,
  ) {}

  /** Takes or renews the lease; true while this holder has it. Renews at most every ttl/3. */
  async acquire(): Promise<boolean> {
    const now = Date.now();
    if (now < this.heldUntil - (this.ttlMs * 2) / 3) return true;
    const rows = await this.sql.query(ACQUIRE, [this.name, this.holder, this.ttlMs]);
    const held = rows.length === 1;
    // Counted from before the statement: the database's expiry is at least this late.
    this.heldUntil = held ? now + this.ttlMs : 0;
    return held;
  }

  /** How long this holder may still act on the lease without renewing (0 when not held). */
  remainingMs(now = Date.now()): number {
    return Math.max(0, this.heldUntil - now);
  }

  /** Gives the lease up so another replica can take over at once. */
  async release(): Promise<void> {
    this.heldUntil = 0;
    await this.sql.query(RELEASE, [this.name, this.holder]);
  }
}
