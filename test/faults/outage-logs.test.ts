// What an operator reads while PostgreSQL is down: the service runs as a child process against a
// private PostgreSQL, under light load; the server is down for ~10 s. Every line on stdout and
// stderr is pino JSON, the database's outage is told by exactly one "down" and one "back" line
// (with outage_ms), expected failures carry no stack, and the lines per minute stay few.
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/infra.js';
import type { LogLine } from '../helpers/process.js';
import { Load } from './helpers/load.js';
import { privatePostgresUnavailable } from './helpers/postgres.js';
import { serviceOnPrivatePostgres } from './helpers/service-on-private-postgres.js';

const skip = privatePostgresUnavailable();
if (skip) console.warn(`[faults] outage-logs skipped: ${skip}`);

const OUTAGE_MS = 10_000;
/** Request lines: one per request (served / refused), the request log itself. */
const isRequestLine = (l: LogLine) => /^(request|http request) /.test(l.msg);
const time = (l: LogLine) => Date.parse(String(l.time));

const fixture = serviceOnPrivatePostgres(skip);

describe.skipIf(skip !== null)('faults - logs during a PostgreSQL outage', () => {
  it('faults - a 10 s database outage logs one line down, one back, no stacks, nothing outside pino', { timeout: 120_000 }, async () => {
    // Light load: three callers, a request every ~half second each, retries once a second.
    const { pg, svc, client } = fixture;
    const load = new Load(client, String(svc.ready.http), { natsLobbies: 2, natsSessions: 0, httpLobbies: 1, pauseMs: 500, retryMs: 1_000 });
    await load.start();
    await waitFor(() => (load.counts().ok ?? 0) >= 10, { message: 'load did not start' });
    const downAt = Date.now();
    await pg.kill('SIGKILL');
    // The outage's length is the fault itself, not a wait for a condition.
    await sleep(OUTAGE_MS);
    await pg.start();
    const backAt = Date.now();
    const back = await waitFor(() => svc.logs.find((l) => l.msg === 'database reachable again'), {
      timeoutMs: 30_000,
      message: 'no "database reachable again" line',
    });
    await waitFor(() => load.firstWriteSuccessAfter(backAt), { timeoutMs: 30_000, message: 'no success after the outage' });
    await load.stop();
    await sleep(100); // the last lines through the pipe
    const stdout = svc.stdout();
    const stderr = svc.stderr();

    // Nothing outside pino: every line of both streams is a JSON object with a level and msg.
    const raw = svc.logs.filter((l) => l.level === 'raw');
    expect(raw.map((l) => l.msg), 'stdout lines that are not pino JSON').toEqual([]);
    const errLines = stderr.split('\n').filter((l) => l.trim() !== '');
    expect(errLines, 'stderr').toEqual([]);
    expect(stdout.length).toBeGreaterThan(0);

    // Exactly one down and one back line for the database, the latter with the outage's length.
    const db = svc.logs.filter((l) => l.dependency === 'database');
    const down = db.filter((l) => l.msg === 'database unreachable');
    expect(down).toHaveLength(1);
    expect(db.filter((l) => l.msg === 'database reachable again')).toEqual([back]);
    expect(down[0]!.level).toBe('warn');
    expect(typeof down[0]!.reason).toBe('string');
    const outageMs = back.outage_ms as number;
    expect(outageMs).toBeGreaterThan(OUTAGE_MS * 0.8);
    expect(outageMs).toBeLessThan(backAt - downAt + 5_000);

    // No stack for any expected failure: no line carries an error object (the stack's home).
    const withStacks = svc.logs.filter((l) => l.err !== undefined || JSON.stringify(l).includes('"stack"'));
    expect(withStacks.map((l) => `${l.level} ${l.msg}`), 'lines with a stack').toEqual([]);
    expect(svc.logs.filter((l) => l.code === 'internal'), 'internal errors').toEqual([]);

    // Lines per minute while the database was down, and the service's own lines among them.
    const during = svc.logs.filter((l) => time(l) >= downAt && time(l) <= time(back));
    const minutes = (time(back) - downAt) / 60_000;
    const own = during.filter((l) => !isRequestLine(l));
    const perMinute = Math.round(during.length / minutes);
    const ownPerMinute = Math.round(own.length / minutes);
    console.log(
      `[figures] outage ${outageMs} ms: ${during.length} log lines (${perMinute}/min), of which ${own.length} not request lines (${ownPerMinute}/min): ${[...new Set(own.map((l) => l.msg))].join(' | ')}`,
    );
    // Besides one line per request: the down line, the back line, and a reminder every 30 s.
    expect(own.length).toBeLessThanOrEqual(2 + Math.ceil(outageMs / 30_000));
  });
});
