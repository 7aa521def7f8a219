/** Waiting for the service's outbox to drain, read straight from its table. */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';

/** Resolves once every `lobby_events` row is published (the relay has no backlog). */
export async function outboxEmpty(db: pg.Pool, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await db.query<{ n: string }>('select count(*) as n from lobby_events where published_at is null');
    if (rows[0]!.n === '0') return;
    if (Date.now() > deadline) throw new Error(`outbox still holds ${rows[0]!.n} unpublished events after ${timeoutMs} ms`);
    await sleep(100);
  }
}
