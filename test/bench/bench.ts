/**
 * Runs the chosen scenarios against the service as a child process, on a database, subject
 * prefix and stream of the run's own, and returns the report (table rows, details, errors).
 * `run.ts` (npm run bench) and `profile.ts` (npm run profile) call it.
 */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { createContext, type BenchContext, type ScenarioResult } from './context.js';
import { createBenchEnv } from './env.js';
import type { BenchOptions, Scenario } from './options.js';
import { evaluate, type Report, type RowResult } from './report.js';
import { ROOT } from './service.js';
import { since } from './stats.js';
import { runJoins } from './scenarios/joins.js';
import { runMemory } from './scenarios/memory.js';
import { runRestart } from './scenarios/restart.js';
import { runSoak } from './scenarios/soak.js';
import { runSteps } from './scenarios/steps.js';

const SCENARIO_RUNNERS: Record<Scenario, (ctx: BenchContext) => Promise<ScenarioResult>> = {
  a: runJoins,
  b: runSteps,
  c: runSoak,
  d: runMemory,
  e: runRestart,
};

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

export async function runBench(opts: BenchOptions): Promise<Report> {
  if (!/^postgres(ql)?:\/\//.test(opts.databaseUrl)) {
    throw new Error(`the bench needs a PostgreSQL server URL (got DATABASE_URL=${opts.databaseUrl.split(':')[0]}:...)`);
  }
  const t0 = performance.now();
  const env = await createBenchEnv(opts.databaseUrl, opts.natsUrl);
  const ctx = createContext(env, opts);
  const meta: Record<string, unknown> = {
    date: new Date().toISOString(),
    commit: gitCommit(),
    node: process.version,
    cpus: cpus().length,
    loadavg_at_start: loadavg().map((x) => Number(x.toFixed(2))),
    smoke: opts.smoke,
    sizes: opts.sizes,
    database: env.databaseName,
    nats: opts.natsUrl,
    prefix: env.prefix,
    node_args: opts.nodeArgs,
  };
  console.log(`bench ${env.id}: database ${env.databaseName}, NATS ${opts.natsUrl} (prefix ${env.prefix}, stream ${env.stream})`);
  const rows: RowResult[] = [];
  const details: Record<string, unknown> = {};
  const errors: Report['errors'] = [];
  // Ctrl-C must not leave a lobby_bench_* database and a stream behind (the service children
  // are SIGKILLed on exit by service.ts).
  const interrupted = () => {
    console.error('interrupted: dropping the bench database and stream');
    void env.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    for (const s of opts.only) {
      const ts = performance.now();
      console.log(`scenario (${s})`);
      try {
        const result = await SCENARIO_RUNNERS[s](ctx);
        rows.push(...result.rows.map(evaluate));
        details[s] = { ...result.details, seconds: since(ts) / 1000 };
        for (const message of result.errors ?? []) errors.push({ scenario: s, message });
      } catch (err) {
        const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
        console.error(`scenario (${s}) could not run: ${message}`);
        errors.push({ scenario: s, message: err instanceof Error ? err.message : String(err) });
      }
    }
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await env.close();
  }
  meta.seconds = since(t0) / 1000;
  return { meta, rows, details, errors };
}
