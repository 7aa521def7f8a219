// PostgreSQL dies under load, six times, three ways (SIGKILL of every server process, an
// immediate shutdown, a fast shutdown): every reply is a success or `unavailable` (503), never
// `internal`, so a client that retries a 503 loses nothing. The service runs as a child process
// against a private PostgreSQL (the system one on 5432 is never stopped); 16 callers join, read,
// leave and step sessions over NATS and over HTTP, retrying `unavailable` with the same
// Idempotency-Key. Also measures recovery: from the server accepting connections again to the
// first successful write.
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/infra.js';
import { Load } from './helpers/load.js';
import { privatePostgresUnavailable, type KillMode } from './helpers/postgres.js';
import { serviceOnPrivatePostgres } from './helpers/service-on-private-postgres.js';

const skip = privatePostgresUnavailable();
if (skip) console.warn(`[faults] postgres-kill skipped: ${skip}`);

const MODES: KillMode[] = ['SIGKILL', 'immediate', 'fast', 'SIGKILL', 'immediate', 'fast'];
const between = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

const fixture = serviceOnPrivatePostgres(skip);

describe.skipIf(skip !== null)('faults - PostgreSQL killed under load', () => {
  it('faults - every reply while PostgreSQL dies and returns is a success or unavailable, never internal', { timeout: 300_000 }, async () => {
    const { pg, svc, client } = fixture;
    const load = new Load(client, String(svc.ready.http), { natsLobbies: 10, natsSessions: 3, httpLobbies: 3 });
    await load.start();
    const rounds: Array<{ mode: KillMode; down_ms: number; restart_ms: number; recovery_ms: number; replies: Record<string, number> }> = [];
    try {
      for (const mode of MODES) {
        // A random moment: after a random number of further replies.
        const before = load.replies.length;
        const wait = between(30, 300);
        await waitFor(() => load.replies.length >= before + wait, { timeoutMs: 30_000, message: 'load stalled before a kill' });
        const downAt = Date.now();
        await pg.kill(mode);
        // Down until the callers have felt it (and some more): requests were in flight and queued.
        const felt = between(16, 200);
        await waitFor(() => (load.counts(downAt).unavailable ?? 0) >= felt, { timeoutMs: 30_000, message: 'no unavailable replies while down' });
        const restartAt = Date.now();
        await pg.start();
        const backAt = Date.now();
        const recovered = await waitFor(() => load.firstWriteSuccessAfter(backAt), { timeoutMs: 30_000, message: 'no successful write after the restart' });
        rounds.push({ mode, down_ms: backAt - downAt, restart_ms: backAt - restartAt, recovery_ms: recovered - backAt, replies: load.counts(downAt) });
      }
    } finally {
      await load.stop();
    }
    const total = load.counts();
    const n = load.replies.length;
    console.log(`[figures] replies under ${MODES.length} PostgreSQL kills: ${n}, by code ${JSON.stringify(total)}`);
    for (const r of rounds) {
      console.log(
        `[figures] kill ${r.mode}: down ${r.down_ms} ms (restart took ${r.restart_ms} ms), first write success ${r.recovery_ms} ms after it accepted connections; replies ${JSON.stringify(r.replies)}`,
      );
    }
    console.log(`[figures] recovery ms: ${rounds.map((r) => r.recovery_ms).join(', ')}`);
    // Each kill is one line down and one back, whatever the number of failed statements: the
    // first statement sent after the restart that succeeds ends the outage.
    const said = (msg: string) => svc.logs.filter((l) => l.msg === msg).length;
    await waitFor(() => said('database reachable again') === said('database unreachable'), { message: 'an outage without its back line' });
    console.log(`[figures] log: ${said('database unreachable')} x database unreachable, ${said('database reachable again')} x reachable again, ${svc.logs.length} lines`);

    expect(total.internal ?? 0, JSON.stringify(load.unexpected.slice(0, 10))).toBe(0);
    expect(load.unexpected, 'replies other than a success or unavailable').toEqual([]);
    expect(total.unavailable).toBeGreaterThan(0);
    expect(total.ok).toBeGreaterThan(0);
    expect(said('database unreachable')).toBe(MODES.length);
    // The service lived through it all and answers normally.
    expect(svc.logs.filter((l) => l.msg === 'lobby service ready')).toHaveLength(1);
    const health = await fetch(`${String(svc.ready.http)}/health`);
    expect(health.status).toBe(200);
    await client.call('lobby.create', 'after-the-kills', {});
  });
});
