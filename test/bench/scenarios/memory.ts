/**
 * (d) Resident memory of the service process (VmRSS): at its base (after start-up and a short
 * warm-up), after N idle lobbies (each created by one device, every second one joined by a
 * second device), and after M sessions held mid-cycle (held.ts, long deadlines). Reported as
 * KiB per idle lobby and per running session beyond the previous level.
 *
 * Each level is taken once the outbox is empty (every event published), after full garbage
 * collections (the child is started with gc-on-signal.ts and sent SIGUSR2): without them RSS
 * carries whatever garbage V8 has not given back yet (30 MiB for 15 s and more after a burst
 * of 3,000 lobbies), which made the figures swing from run to run.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { Subject } from '../../../subjects/index.js';
import type { BenchContext, ScenarioResult } from '../context.js';
import { holdSessions } from '../held.js';
import { outboxEmpty } from '../outbox.js';
import type { ServiceProcess } from '../service.js';
import { pool } from '../stats.js';

const CALLERS = 32;

/** The memory scenario's service runs a full GC on SIGUSR2 (gc-on-signal.ts). */
export const GC_ON_SIGNAL = ['--expose-gc', '--import', './dist/test/bench/gc-on-signal.js'];

/** VmRSS (KiB) once the outbox is empty, after full GCs: the minimum of a few samples. */
async function settledRss(svc: ServiceProcess, db: pg.Pool): Promise<{ min: number; beforeGc: number; samples: number[] }> {
  await outboxEmpty(db);
  const beforeGc = svc.rssKiB();
  // Twice: objects with finalizers or weak references are only freed by the second one.
  for (let i = 0; i < 2; i++) {
    svc.signal('SIGUSR2');
    await sleep(300);
  }
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(svc.rssKiB());
    await sleep(100);
  }
  return { min: Math.min(...samples), beforeGc, samples };
}

export async function runMemory(ctx: BenchContext): Promise<ScenarioResult> {
  const { idleLobbies, running } = ctx.opts.sizes;
  const svc = await ctx.startService({}, GC_ON_SIGNAL);
  const db = ctx.pgPool(2);
  const call = ctx.call;
  try {
    // Warm-up: every code path of the later phases once, so their code is loaded and compiled
    // before the base is taken (a smoke run only checks that the scenario runs).
    if (!ctx.opts.smoke) {
      await holdSessions(call, 'd-warm', 4, 4);
      await pool(100, 8, async (i) => {
        const l = await call.call(Subject['lobby.create'], `d-warm-a${i}`, {});
        await call.call(Subject['lobby.join'], `d-warm-b${i}`, { code: l.code });
      });
    }
    const base = await settledRss(svc, db);
    ctx.log(`(d) base ${base.min} KiB; creating ${idleLobbies} idle lobbies...`);

    await pool(idleLobbies, CALLERS, async (i) => {
      const l = await call.call(Subject['lobby.create'], `d-idle-${i}`, {});
      if (i % 2 === 0) await call.call(Subject['lobby.join'], `d-guest-${i}`, { code: l.code });
    });
    const idle = await settledRss(svc, db);
    ctx.log(`(d) with idle lobbies ${idle.min} KiB; holding ${running} sessions mid-cycle...`);

    await holdSessions(call, 'd-run', running, CALLERS);
    const sessions = await settledRss(svc, db);
    ctx.log(`(d) with running sessions ${sessions.min} KiB`);

    const perLobby = (idle.min - base.min) / idleLobbies;
    const perSession = (sessions.min - idle.min) / running;
    // The same without the forced GCs: what a process that just did this work holds.
    const noGc = `without forcing GC: ${((idle.beforeGc - base.beforeGc) / idleLobbies).toFixed(1)} KiB per idle lobby, ${((sessions.beforeGc - idle.beforeGc) / running).toFixed(1)} KiB per running session`;
    return {
      rows: [
        { scenario: '(d) RSS at base (after full GCs)', figure: base.min / 1024, unit: 'MiB', note: noGc },
        { scenario: `(d) RSS per idle lobby (${idleLobbies})`, figure: perLobby, unit: 'KiB', goal: { on: 'figure', op: '<=', value: 2 } },
        { scenario: `(d) RSS per running session (${running})`, figure: perSession, unit: 'KiB', goal: { on: 'figure', op: '<=', value: 50 } },
      ],
      details: {
        idleLobbies,
        running,
        rssKiB: { base, idle, sessions },
        perIdleLobbyKiB: perLobby,
        perRunningSessionKiB: perSession,
        serviceLogs: svc.logCounts(),
      },
    };
  } finally {
    await db.end();
    await svc.stop();
  }
}
