import { describe, expect, it } from 'vitest';
import { DatabaseHealth, isReportable } from '../../src/db/health.js';
import { createLogger } from '../../src/log.js';

/** A logger writing parsed lines into `lines`. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

/** A probe whose answer the test switches. */
function switchable() {
  const state = { up: true, pings: 0 };
  const probe = async () => {
    state.pings++;
    if (!state.up) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  };
  return { state, probe };
}

const until = async (cond: () => boolean, ms = 2_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('database health', () => {
  it('health - only failures without a SQLSTATE of their own are reported', () => {
    expect(isReportable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isReportable(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isReportable(Object.assign(new Error('x'), { code: '57P01' }))).toBe(true);
    expect(isReportable(Object.assign(new Error('x'), { code: '08006' }))).toBe(true);
    expect(isReportable(Object.assign(new Error('x'), { code: '23505' }))).toBe(false);
    expect(isReportable(Object.assign(new Error('x'), { code: '22P02' }))).toBe(false);
    expect(isReportable(Object.assign(new Error('x'), { code: 'P0001' }))).toBe(false);
  });

  it('health - an outage is one line down, one back with its length, however many statements fail', async () => {
    const { log, lines } = capture();
    const { state, probe } = switchable();
    const health = new DatabaseHealth(probe, log, { pingEveryMs: 20, reminderMs: 60_000 });
    try {
      state.up = false;
      for (let i = 0; i < 50; i++) health.report(new Error(`Connection terminated unexpectedly ${i}`));
      await until(() => !health.reachable);
      for (let i = 0; i < 50; i++) health.report(new Error('connect ECONNREFUSED'));
      await until(() => state.pings >= 4);
      expect(health.reachable).toBe(false);
      state.up = true;
      await until(() => health.reachable);
      const said = lines.map((l) => l.msg);
      expect(said).toEqual(['database unreachable', 'database reachable again']);
      expect(lines[0]).toMatchObject({ level: 'warn', dependency: 'database', reason: 'connect ECONNREFUSED 127.0.0.1:5432' });
      expect(lines[1]).toMatchObject({ level: 'info', dependency: 'database', failures: 50 });
      expect(lines[1]!.outage_ms).toBeGreaterThanOrEqual(0);
      expect(JSON.stringify(lines)).not.toContain('stack');
      // Up again: no more pings until something fails.
      const pings = state.pings;
      await new Promise((r) => setTimeout(r, 60));
      expect(state.pings).toBe(pings);
    } finally {
      health.stop();
    }
  });

  it('health - a statement that succeeds ends the outage without waiting for a ping', async () => {
    const { log, lines } = capture();
    const { state, probe } = switchable();
    const health = new DatabaseHealth(probe, log, { pingEveryMs: 60_000 });
    try {
      state.up = false;
      health.report(new Error('Connection terminated unexpectedly'));
      await until(() => !health.reachable);
      // Sent before the outage began: its answer was already on its way.
      health.succeeded(Date.now() - 60_000);
      expect(health.reachable).toBe(false);
      health.succeeded(Date.now());
      expect(health.reachable).toBe(true);
      health.succeeded(Date.now());
      expect(lines.map((l) => l.msg)).toEqual(['database unreachable', 'database reachable again']);
    } finally {
      health.stop();
    }
  });

  it('health - a ping that fails after a statement succeeded does not start a new outage', async () => {
    const { log, lines } = capture();
    let release: (err: Error) => void = () => undefined;
    let slow = false;
    const probe = () =>
      slow ? new Promise<void>((_, reject) => (release = reject)) : Promise.reject(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }));
    const health = new DatabaseHealth(probe, log, { pingEveryMs: 5, pingTimeoutMs: 5_000 });
    try {
      health.report(new Error('Connection terminated unexpectedly'));
      await until(() => !health.reachable);
      // The next ping hangs (the server is starting up); a statement succeeds meanwhile.
      slow = true;
      await new Promise((r) => setTimeout(r, 30));
      health.succeeded(Date.now());
      release(new Error('the database system is starting up'));
      await new Promise((r) => setTimeout(r, 30));
      expect(health.reachable).toBe(true);
      expect(lines.map((l) => l.msg)).toEqual(['database unreachable', 'database reachable again']);
    } finally {
      health.stop();
    }
  });

  it('health - a reminder while it stays down', async () => {
    const { log, lines } = capture();
    const { state, probe } = switchable();
    const health = new DatabaseHealth(probe, log, { pingEveryMs: 10, reminderMs: 30 });
    try {
      state.up = false;
      health.report(new Error('Connection terminated unexpectedly'));
      await until(() => lines.filter((l) => l.msg === 'database still unreachable').length >= 2);
      expect(lines.filter((l) => l.msg === 'database unreachable')).toHaveLength(1);
      expect(lines.find((l) => l.msg === 'database still unreachable')).toMatchObject({ level: 'warn', dependency: 'database' });
    } finally {
      health.stop();
    }
  });

  it('health - explains a reported failure while the database is unreachable, and nothing else', async () => {
    const { log } = capture();
    const { state, probe } = switchable();
    const health = new DatabaseHealth(probe, log, { pingEveryMs: 1_000 });
    try {
      const reported = new Error('Received unexpected commandComplete message from backend.');
      health.report(reported);
      // Reachable: a reported failure is the statement's own (internal).
      expect(await health.explains(reported)).toBe(false);
      state.up = false;
      // Never reported (a bug in our code): not the database's doing, down or not.
      expect(await health.explains(new TypeError('x is undefined'))).toBe(false);
      const later = new Error('Received unexpected rowDescription message from backend.');
      health.report(later);
      expect(await health.explains(later)).toBe(true);
      // Wrapped by a caller: the cause is what was reported.
      expect(await health.explains(new Error('lobby apply failed', { cause: later }))).toBe(true);
    } finally {
      health.stop();
    }
  });

  it('health - a ping that hangs counts as failed', async () => {
    const { log, lines } = capture();
    const health = new DatabaseHealth(() => new Promise<void>(() => undefined), log, { pingTimeoutMs: 30, pingEveryMs: 1_000 });
    try {
      expect(await health.check()).toBe(false);
      expect(lines[0]).toMatchObject({ msg: 'database unreachable', reason: 'no answer within 30 ms' });
    } finally {
      health.stop();
    }
  });
});
