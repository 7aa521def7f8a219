/**
 * (d) Resident memory of the service process (VmRSS): at its base (after start-up and a short
 * warm-up), after N idle lobbies (each created by one device, every second one joined by a
 * second device), and after M sessions held mid-cycle (held.ts, long deadlines). Reported as
 * KiB per idle lobby and per running session beyond the previous level.
 *
 * GC cannot be triggered from outside: each level is the minimum of samples taken over 25 s
 * once the outbox is empty (every event published), long enough for V8's memory reducer.
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

/** Minimum VmRSS (KiB) over a few samples once the outbox is empty. */
async function settledRss(svc: ServiceProcess, db: pg.Pool, smoke: boolean): Promise<{ min: number; samples: number[] }> {
  await outboxEmpty(db);
  // V8 gives heap back only when its memory reducer runs, about 15 s after allocation stops
  // (measured: 219 -> 187 MiB at 16 s after 3,000 lobbies, flat before and after): sample for
  // 25 s so that the minimum is taken after it.
  await sleep(smoke ? 200 : 2_000);
  const samples: number[] = [];
  for (let i = 0; i < (smoke ? 3 : 32); i++) {
    samples.push(svc.rssKiB());
    await sleep(smoke ? 100 : 800);
  }
  return { min: Math.min(...samples), samples };
}

export async function runMemory(ctx: BenchContext): Promise<ScenarioResult> {
  const { idleLobbies, running } = ctx.opts.sizes;
  const svc = await ctx.startService();
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
    const base = await settledRss(svc, db, ctx.opts.smoke);
    ctx.log(`(d) base ${base.min} KiB; creating ${idleLobbies} idle lobbies...`);

    await pool(idleLobbies, CALLERS, async (i) => {
      const l = await call.call(Subject['lobby.create'], `d-idle-${i}`, {});
      if (i % 2 === 0) await call.call(Subject['lobby.join'], `d-guest-${i}`, { code: l.code });
    });
    const idle = await settledRss(svc, db, ctx.opts.smoke);
    ctx.log(`(d) with idle lobbies ${idle.min} KiB; holding ${running} sessions mid-cycle...`);

    await holdSessions(call, 'd-run', running, CALLERS);
    const sessions = await settledRss(svc, db, ctx.opts.smoke);
    ctx.log(`(d) with running sessions ${sessions.min} KiB`);

    const perLobby = (idle.min - base.min) / idleLobbies;
    const perSession = (sessions.min - idle.min) / running;
    return {
      rows: [
        { scenario: '(d) RSS at base', figure: base.min / 1024, unit: 'MiB' },
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
