/**
 * What every scenario gets: the run's environment, options, a caller on the service's prefix,
 * a pg pool for the floors, and `startService()`, which spawns a fresh service child with the
 * bench's environment (each scenario starts its own, so one scenario's heap or backlog never
 * weighs on the next).
 */
import pg from 'pg';
import type { BenchEnv } from './env.js';
import type { BenchOptions } from './options.js';
import { caller, type Caller } from './client.js';
import type { Row } from './report.js';
import { ServiceProcess } from './service.js';

export interface ScenarioResult {
  rows: Row[];
  details: Record<string, unknown>;
  /**
   * Why the scenario did not run as it should (sessions failing, protocol violations): its
   * figures are still shown, but the run's exit code is non-zero.
   */
  errors?: string[];
}

export interface BenchContext {
  env: BenchEnv;
  opts: BenchOptions;
  call: Caller;
  /** The service's environment (database, prefix, stream, raised limits, LOG_LEVEL=warn). */
  serviceEnv: Record<string, string>;
  /** A fresh service child; `nodeArgs` come after the run's own (e.g. the profiler's). */
  startService(extraEnv?: Record<string, string>, nodeArgs?: string[]): Promise<ServiceProcess>;
  /** A pg.Pool of `size` on the run's database, for the floors; ended by the caller. */
  pgPool(size: number): pg.Pool;
  log(message: string): void;
}

export function createContext(env: BenchEnv, opts: BenchOptions): BenchContext {
  const call = caller(env.nc, env.prefix);
  const serviceEnv: Record<string, string> = {
    NATS_URL: env.natsUrl,
    NATS_SUBJECT_PREFIX: env.prefix,
    NATS_STREAM: env.stream,
    DATABASE_URL: env.databaseUrl,
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    LOG_LEVEL: 'warn',
    // The bench's devices are few callers sending far more than a phone does.
    RATE_LIMIT_PER_SECOND: '100000',
    RATE_LIMIT_BURST: '1000000',
    JOIN_CODE_FAILURES_PER_MINUTE: '100000',
    MAX_PARTICIPANTS: '64',
  };
  return {
    env,
    opts,
    call,
    serviceEnv,
    startService: (extraEnv = {}, nodeArgs = []) =>
      ServiceProcess.start({ env: { ...serviceEnv, ...extraEnv }, nodeArgs: [...opts.nodeArgs, ...nodeArgs], probe: call }),
    pgPool: (size) => new pg.Pool({ connectionString: env.databaseUrl, max: size }),
    log: (message) => console.log(`  ${message}`),
  };
}
