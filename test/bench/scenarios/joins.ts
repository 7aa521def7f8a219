/**
 * (a) Join+leave pairs per second with N concurrent callers, against the same join and leave
 * transactions issued bare through `pg` (bare-sql.ts) on the same database and lobbies.
 *
 * Workload, identical on both paths: L lobbies (an admin and 3 resident members each, so every
 * lobby.updated carries a lobby of realistic size); pair n joins lobby n % L and leaves it
 * again, as the device of the worker that runs it. The first visit of a worker to a lobby
 * inserts its participant row, later visits rejoin it (an update), as in the service.
 */
import { Subject } from '../../../subjects/index.js';
import { bareJoin, bareLeave } from '../bare-sql.js';
import type { BenchContext, ScenarioResult } from '../context.js';
import { pool, since, summarize } from '../stats.js';

const LOBBIES = 64;
const RESIDENTS = 3;

interface Lobby {
  id: string;
  code: string;
}

type PairFn = (lobby: Lobby, device: string) => Promise<void>;

/** Runs `pairs` join+leave pairs with `callers` workers; pairs/s and per-pair latencies. */
async function measure(pairs: number, callers: number, lobbies: Lobby[], devicePrefix: string, pair: PairFn) {
  const latencies: number[] = [];
  const t0 = performance.now();
  await pool(pairs, callers, async (n, worker) => {
    const s = performance.now();
    await pair(lobbies[n % lobbies.length]!, `${devicePrefix}-w${worker}`);
    latencies.push(since(s));
  });
  const seconds = since(t0) / 1000;
  return { pairsPerSecond: pairs / seconds, seconds, latency: summarize(latencies) };
}

export async function runJoins(ctx: BenchContext): Promise<ScenarioResult> {
  const { pairs, callers } = ctx.opts.sizes;
  const svc = await ctx.startService();
  const pg = ctx.pgPool(callers);
  try {
    const lobbies: Lobby[] = [];
    await pool(LOBBIES, callers, async (i) => {
      const l = await ctx.call.call(Subject['lobby.create'], `a-admin-${i}`, {});
      for (let r = 0; r < RESIDENTS; r++) await ctx.call.call(Subject['lobby.join'], `a-res-${i}-${r}`, { code: l.code });
      lobbies[i] = { id: l.lobby_id, code: l.code };
    });

    const service: PairFn = async (lobby, device) => {
      await ctx.call.call(Subject['lobby.join'], device, { code: lobby.code });
      await ctx.call.call(Subject['lobby.leave'], device, { lobby_id: lobby.id });
    };
    const bare: PairFn = async (lobby, device) => {
      await bareJoin(pg, lobby.code, device);
      await bareLeave(pg, lobby.id, device);
    };
    // Warm both paths (JIT, connection pools) on their own devices before measuring (a smoke
    // run only checks that the scenario runs).
    if (!ctx.opts.smoke) {
      await measure(2 * LOBBIES, callers, lobbies, 'a-warm-svc', service);
      await measure(2 * LOBBIES, callers, lobbies, 'a-warm-bare', bare);
    }

    ctx.log(`(a) ${pairs} pairs bare through pg...`);
    const floor = await measure(pairs, callers, lobbies, 'a-bare', bare);
    ctx.log(`(a) ${pairs} pairs through the service...`);
    const ours = await measure(pairs, callers, lobbies, 'a-svc', service);
    return {
      rows: [
        {
          scenario: `(a) join+leave pairs/s, ${callers} callers`,
          figure: ours.pairsPerSecond,
          unit: 'pairs/s',
          floor: floor.pairsPerSecond,
          goal: { on: 'ratio', op: '>=', value: 0.5 },
        },
        {
          scenario: '(a) join+leave pair latency p50',
          figure: ours.latency.p50,
          unit: 'ms',
          floor: floor.latency.p50,
        },
        {
          scenario: '(a) join+leave pair latency p99',
          figure: ours.latency.p99,
          unit: 'ms',
          floor: floor.latency.p99,
        },
      ],
      details: { pairs, callers, lobbies: LOBBIES, residents: RESIDENTS, service: ours, bare: floor, serviceLogs: svc.logCounts() },
    };
  } finally {
    await pg.end();
    await svc.stop();
  }
}
