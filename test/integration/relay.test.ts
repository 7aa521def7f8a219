/**
 * The outbox relay's fast path (`hand`) against real NATS and PostgreSQL: a handed batch is
 * published at once; gaps, failures, lease hand-overs and shutdown keep each lobby's events in
 * id order, each stored once; acks are marked in a few batched statements.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EventRow } from '../../src/outbox/event-row.js';
import type { Destination, OutboxRelay } from '../../src/outbox/relay.js';
import { waitFor } from '../helpers/infra.js';
import { openRelayFixture, type RelayFixture } from '../helpers/relay.js';

let f: RelayFixture;
let started: OutboxRelay[] = [];
beforeAll(async () => {
  f = await openRelayFixture();
});
afterEach(async () => {
  // Each test's relays give the lease up, so the next test's relay takes it at once.
  for (const r of started) await r.stop();
  started = [];
});
afterAll(async () => {
  await f?.close();
});

/** A started relay of this test. */
function relay(...args: Parameters<RelayFixture['relay']>): OutboxRelay {
  const r = f.relay(...args);
  started.push(r);
  return r;
}

/** A started relay that holds the lease and has run its first scan. */
async function leader(...args: Parameters<RelayFixture['relay']>): Promise<OutboxRelay> {
  const r = relay(...args);
  await waitFor(() => r.isLeader && r.scans > 0, { message: 'relay never took the lease' });
  return r;
}

const ids = (rows: EventRow[]) => rows.map((r) => r.id);
/** Statements that read `lobby_events` (anything but the batched marks). */
const eventReads = (statements: string[]) => statements.filter((s) => /from lobby_events/.test(s));

describe('outbox relay - hand', () => {
  it('relay - a handed batch is published at once, with no database read, long before the next scan', async () => {
    // A scan every minute: only the hand path can publish within this test.
    const r = await leader({ pollMs: 60_000 });
    const L = await f.lobby();
    const first = await f.write(L, 3);
    const before = f.statements.length;
    const scans = r.scans;

    const t0 = performance.now();
    r.hand(f.batch(L, first, null));
    await waitFor(() => f.received(L).length === 3, { message: 'first batch not published' });
    const second = await f.write(L, 2);
    const t1 = performance.now();
    r.hand(f.batch(L, second, first));
    await waitFor(() => f.received(L).length === 5, { message: 'second batch not published' });

    expect(f.received(L)).toEqual(ids([...first, ...second]));
    expect(r.scans).toBe(scans);
    expect(eventReads(f.statements.slice(before))).toEqual([]);
    const latency = (at: number, id: number) => f.arrivals.find((a) => a.id === id)!.at - at;
    // Far below the 60 s scan interval (milliseconds in practice; the margin is for a busy machine).
    expect(latency(t0, first[0]!.id)).toBeLessThan(2_000);
    expect(latency(t1, second[0]!.id)).toBeLessThan(2_000);
    await waitFor(async () => (await f.unpublished()) === 0, { message: 'published rows not marked' });
    expect(await f.stored(L)).toEqual(ids([...first, ...second]));
  });

  it('relay - a batch after a gap is published after the missing rows, in id order', async () => {
    const r = await leader({ pollMs: 60_000 });
    const scans = r.scans;

    // Known lobby: rows written by "another replica" (never handed) sit between two batches.
    const L = await f.lobby();
    const a = await f.write(L, 1);
    r.hand(f.batch(L, a, null));
    await waitFor(() => f.received(L).length === 1);
    const missing = await f.write(L, 3);
    const b = await f.write(L, 1);
    r.hand(f.batch(L, b, missing));

    // A lobby this relay never met, with older unpublished rows.
    const M = await f.lobby();
    const older = await f.write(M, 2);
    const m = await f.write(M, 2);
    r.hand(f.batch(M, m, older));

    await waitFor(() => f.received(L).length === 5 && f.received(M).length === 4, {
      message: 'rows after a gap not published',
    });
    expect(f.received(L)).toEqual(ids([...a, ...missing, ...b]));
    expect(f.received(M)).toEqual(ids([...older, ...m]));

    // A lobby this relay never met whose older rows another relay already published: one check.
    const N = await f.lobby();
    const done = await f.write(N, 2);
    await f.markPublished(done);
    const n = await f.write(N, 1);
    const before = f.statements.length;
    r.hand(f.batch(N, n, done));
    await waitFor(() => f.received(N).length === 1);
    expect(f.received(N)).toEqual(ids(n));
    expect(eventReads(f.statements.slice(before))).toEqual([expect.stringContaining('select 1 as older')]);
    expect(r.scans).toBe(scans);
    for (const lobby of [L, M]) expect(await f.stored(lobby)).toEqual(await f.logged(lobby));
  });

  it('relay - a failure stops that lobby only; it resumes in order, later batches queued behind', async () => {
    let blocked = true;
    let attempts = 0;
    const L = await f.lobby();
    const K = await f.lobby();
    const first = await f.write(L, 5);
    const stuck = first[2]!.id;
    const flaky: Destination = {
      ...f.jetStream,
      async deliver(row) {
        if (row.id === stuck && blocked) {
          attempts++;
          throw new Error('injected failure');
        }
        return f.jetStream.deliver(row);
      },
    };
    const r = await leader({ pollMs: 60_000, maxBackoffMs: 100 }, flaky);
    r.hand(f.batch(L, first, null));
    const other = await f.write(K, 3);
    r.hand(f.batch(K, other, null));
    await waitFor(() => attempts >= 3 && f.received(K).length === 3, { message: 'no retries, or the other lobby waited' });
    const later = await f.write(L, 2);
    r.hand(f.batch(L, later, first));
    await waitFor(() => attempts >= 4);
    // Stopped at the failure: nothing after it went out.
    expect(f.received(L)).toEqual(ids(first.slice(0, 2)));

    blocked = false;
    await waitFor(() => f.received(L).length === 7, { message: 'lobby did not resume' });
    expect(f.received(L)).toEqual(ids([...first, ...later]));
    expect(await f.stored(L)).toEqual(ids([...first, ...later]));
    expect(f.received(K)).toEqual(ids(other));
  });

  it('relay - retryNow in the same tick as the failure it caused (a new stream leader) skips the back-off', async () => {
    const L = await f.lobby();
    const rows = await f.write(L, 2);
    const attempts: number[] = [];
    let r!: OutboxRelay;
    const interrupted: Destination = {
      ...f.jetStream,
      async deliver(row) {
        if (row.id === rows[0]!.id && attempts.length < 5) {
          attempts.push(performance.now());
          // As the stream's leader-elected advisory does: fail the publish, then ask for a retry.
          r.retryNow();
          throw new Error('the stream elected a new leader');
        }
        return f.jetStream.deliver(row);
      },
    };
    r = await leader({ pollMs: 60_000 }, interrupted);
    r.hand(f.batch(L, rows, null));
    await waitFor(() => f.received(L).length === 2, { message: 'not delivered after the retries' });
    expect(f.received(L)).toEqual(ids(rows));
    // Back-offs would add up to 100 + 200 + 400 + 800 ms between these five attempts.
    expect(attempts.at(-1)! - attempts[0]!).toBeLessThan(500);
  });

  it('relay - two relays competing for the lease never publish a lobby out of order', async () => {
    // Each relay's standby kicks go to the other, as `_lobby.outbox.kick` would carry them.
    const relays: OutboxRelay[] = [];
    const all: OutboxRelay[] = [];
    const opts = (i: number) => ({ leaseMs: 900, pollMs: 200, onStandbyNotify: () => relays[1 - i]?.kick() });
    relays.push(relay(opts(0)), relay(opts(1)));
    all.push(...relays);
    const lobbies = await Promise.all(Array.from({ length: 6 }, () => f.lobby()));
    const tails = new Map<string, EventRow[]>();

    for (let round = 0; round < 30; round++) {
      await Promise.all(
        lobbies.map(async (L, k) => {
          const rows = await f.write(L, 1 + ((round + k) % 3));
          // Commits land on either replica; each hands its rows to its own relay.
          relays[(round + k) % 2]!.hand(f.batch(L, rows, tails.get(L) ?? null));
          tails.set(L, rows);
        }),
      );
      if (round % 10 === 9) {
        // The lease holder shuts down mid-stream and a new replica starts: the lease moves.
        const i = await waitFor(() => relays.findIndex((r) => r.isLeader) + 1, { message: 'no lease holder' }) - 1;
        void relays[i]!.stop(0);
        relays[i] = relay(opts(i));
        all.push(relays[i]!);
      }
    }
    await waitFor(async () => (await f.unpublished()) === 0, { timeoutMs: 20_000, message: 'backlog not published' });
    for (const L of lobbies) {
      const logged = await f.logged(L);
      expect(await f.stored(L)).toEqual(logged);
      // A core subscriber may see an event twice across a hand-over, never out of order.
      const seen = [...new Set(f.received(L))];
      expect(seen).toEqual(logged);
    }
    // The lease did move: several relays published.
    expect(all.filter((r) => r.delivered > 0).length).toBeGreaterThanOrEqual(3);
  });

  it('relay - acks are marked in a few batched statements, not one per event', async () => {
    const r = await leader({ pollMs: 60_000 });
    const before = f.statements.length;
    const marksBefore = r.markStats;
    const lobbies = await Promise.all(Array.from({ length: 20 }, () => f.lobby()));
    const tails = new Map<string, EventRow[]>();
    // 200 single-event commits, as commands make them.
    for (let i = 0; i < 10; i++) {
      for (const L of lobbies) {
        const rows = await f.write(L, 1);
        r.hand(f.batch(L, rows, tails.get(L) ?? null));
        tails.set(L, rows);
      }
    }
    await waitFor(async () => (await f.unpublished()) === 0, { message: 'not all marked' });
    const updates = f.statements.slice(before).filter((s) => s.startsWith('update lobby_events'));
    const stats = r.markStats;
    expect(stats.marked - marksBefore.marked).toBe(200);
    expect(updates).toHaveLength(stats.flushes - marksBefore.flushes);
    expect(updates.length).toBeLessThanOrEqual(40);
    console.log(`relay marks: 200 acks marked by ${updates.length} statements`);
    for (const L of lobbies) expect(f.received(L)).toEqual(await f.logged(L));
  });

  it('relay - a standby publishes nothing; the lease holder, kicked, publishes from the database', async () => {
    const holder = await leader({ pollMs: 60_000 });
    const standby = relay({ pollMs: 60_000, onStandbyNotify: () => holder.kick() });
    const L = await f.lobby();
    const rows = await f.write(L, 3);
    const scans = holder.scans;
    standby.hand(f.batch(L, rows, null));
    await waitFor(() => f.received(L).length === 3, { message: 'kicked lease holder did not publish' });
    expect(f.received(L)).toEqual(ids(rows));
    expect(standby.isLeader).toBe(false);
    expect(standby.delivered).toBe(0);
    expect(holder.scans).toBeGreaterThan(scans);
  });

  it('relay - stop delivers what is queued and what only the database holds, marks it, gives the lease up', async () => {
    const r = await leader({ pollMs: 60_000 });
    const L = await f.lobby();
    const handed = await f.write(L, 20);
    const M = await f.lobby();
    const unhanded = await f.write(M, 5);
    r.hand(f.batch(L, handed, null));
    await r.stop(10_000);
    expect(await f.unpublished()).toBe(0);
    expect(await f.stored(L)).toEqual(ids(handed));
    expect(await f.stored(M)).toEqual(ids(unhanded));
    const leases = await f.db.sql.query('select holder from leases');
    expect(leases).toEqual([]);
  });
});
