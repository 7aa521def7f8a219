/**
 * A private PostgreSQL server for tests that kill it: `initdb` into a temp dir, `postgres` on a
 * free port with its socket in that dir. The system server on 5432 (CI and other tests use it)
 * is never touched.
 *
 * initdb and postgres refuse to run as root. When the tests run as root, both are started as
 * the `postgres` user (node's `spawn` with `uid`/`gid`, what `runuser -u postgres --` does);
 * `privatePostgresUnavailable()` says why no server can be started, for a clear skip.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chownSync, constants as fsConstants, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, waitFor } from '../../helpers/infra.js';

const live = new Set<ChildProcess>();
process.once('exit', () => {
  // The whole process group: the postmaster and its backends.
  for (const p of live) if (p.pid) tryKill(-p.pid, 'SIGKILL');
});

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** The directory of `initdb` and `postgres`: `PG_BIN`, else the newest /usr/lib/postgresql/N/bin, else pg_config's. */
function binDir(): string | null {
  const candidates: string[] = [];
  if (process.env.PG_BIN) candidates.push(process.env.PG_BIN);
  try {
    const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  } catch {
    // not a Debian layout
  }
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim());
  } catch {
    // no pg_config on PATH
  }
  for (const dir of candidates) {
    try {
      accessSync(join(dir, 'initdb'), fsConstants.X_OK);
      accessSync(join(dir, 'postgres'), fsConstants.X_OK);
      return dir;
    } catch {
      // try the next one
    }
  }
  return null;
}

/** uid/gid to run the server as: none needed unless root; as root, the `postgres` user's. */
function runAs(): { uid: number; gid: number } | null | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) return null;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Why a private server cannot be started here, or null when it can. */
export function privatePostgresUnavailable(): string | null {
  if (!binDir()) return 'no initdb/postgres binaries (set PG_BIN, or install postgresql)';
  if (runAs() === null) return 'running as root and there is no "postgres" user to run initdb and postgres as';
  return null;
}

export type KillMode = 'SIGKILL' | 'immediate' | 'fast';

export interface PrivatePostgres {
  port: number;
  /** URL of the `postgres` database (trust auth, user postgres). */
  url: string;
  running(): boolean;
  /**
   * Stops the server abruptly: `SIGKILL` to the postmaster and every backend (a crash),
   * `immediate` (SIGQUIT, what `pg_ctl stop -m immediate` sends) or `fast` (SIGINT: clients are
   * disconnected with 57P01). Resolves once every process of the server is gone.
   */
  kill(mode: KillMode): Promise<void>;
  /** Starts it again on the same port and data (crash recovery included); resolves once it answers. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

const SIGNAL: Record<KillMode, NodeJS.Signals> = { SIGKILL: 'SIGKILL', immediate: 'SIGQUIT', fast: 'SIGINT' };

/** initdb + start. Check `privatePostgresUnavailable()` first. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = binDir();
  const user = runAs();
  if (!bin || user === null) throw new Error(`private PostgreSQL: ${privatePostgresUnavailable()}`);
  const dir = await mkdtemp(join(tmpdir(), 'pg-fault-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  execFileSync(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    ...(user ?? {}),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const port = await freePort();
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  let proc: ChildProcess | undefined;
  let log = '';
  const alive = () => proc !== undefined && proc.exitCode === null && proc.signalCode === null;

  /** Whether any process of the server's group is left (backends outlive a SIGKILLed postmaster). */
  const groupAlive = (pid: number) => {
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  const server: PrivatePostgres = {
    port,
    url,
    running: alive,
    async start() {
      if (alive()) return;
      // fsync off only loses data when the machine crashes, not when the server does: commits
      // stay durable across these kills (synchronous_commit stays on: off would lose them).
      const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'];
      args.push('-c', 'full_page_writes=off', '-c', 'max_connections=100');
      // Its own process group, so a "crash" can take the backends down with the postmaster.
      const p = spawn(join(bin, 'postgres'), args, { ...(user ?? {}), detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
      proc = p;
      live.add(p);
      p.once('exit', () => live.delete(p));
      p.stderr!.setEncoding('utf8').on('data', (c: string) => (log = (log + c).slice(-20_000)));
      await waitFor(
        async () => {
          if (!alive()) throw new Error(`postgres exited (${p.exitCode ?? p.signalCode}): ${log}`);
          const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
          c.on('error', () => undefined);
          try {
            await c.connect();
            await c.query('select 1');
            return true;
          } finally {
            await c.end().catch(() => undefined);
          }
        },
        { timeoutMs: 30_000, intervalMs: 50, message: 'private PostgreSQL did not come up' },
      );
    },
    async kill(mode) {
      const p = proc;
      if (!p?.pid || !alive()) return;
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      if (mode === 'SIGKILL') tryKill(-p.pid, 'SIGKILL');
      else tryKill(p.pid, SIGNAL[mode]);
      await exited;
      await waitFor(() => !groupAlive(p.pid!), { timeoutMs: 10_000, message: 'postgres backends still running' });
    },
    async stop() {
      if (alive()) await server.kill('fast');
      await rm(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
