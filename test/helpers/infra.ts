// Shared helpers for integration tests that talk to real NATS and PostgreSQL.
//
// Where NATS / PostgreSQL come from is decided once per run in ./global-setup.ts
// and handed to the test workers through vitest's provide/inject.
// Every test file creates its own database (createDatabase) and its own
// subject prefix (uniqueId), so files can run in parallel against one server.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';
import pg from 'pg';
import { inject } from 'vitest';
// Type-only: brings the ProvidedContext augmentation (natsUrl, pgAdminUrl) into scope.
import type {} from './global-setup.js';

/** NATS server URL for this run (env NATS_URL, private nats-server or container). */
export function natsUrl(): string {
  return inject('natsUrl');
}

/** PostgreSQL *server* URL with rights to CREATE/DROP DATABASE. Never run tests in it. */
export function pgAdminUrl(): string {
  return inject('pgAdminUrl');
}

/**
 * Short random id such as `t_3f9a0c12b7e4`: only [a-z0-9_], so it is usable as a
 * NATS subject token and as an unquoted PostgreSQL identifier.
 */
export function uniqueId(prefix = 't'): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(prefix)) {
    throw new Error(`uniqueId: prefix must match [a-z_][a-z0-9_]*, got ${JSON.stringify(prefix)}`);
  }
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('freePort: no port assigned'))));
    });
  });
}

export interface WaitForOptions {
  timeoutMs?: number;
  intervalMs?: number;
  message?: string;
}

/** `T` without the falsy values `waitFor` keeps waiting through. */
export type Truthy<T> = Exclude<T, undefined | null | false | 0 | ''>;

/**
 * Polls `predicate` until it returns a truthy value without throwing and returns that value.
 * On timeout throws an Error with `message` and the last error or value seen.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<Truthy<T>> {
  const { timeoutMs = 10_000, intervalMs = 20, message = 'waitFor: condition not met' } = opts;
  const deadline = Date.now() + timeoutMs;
  let last: { error: unknown } | { value: unknown } = { value: undefined };
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as Truthy<T>;
      last = { value };
    } catch (error) {
      last = { error };
    }
    if (Date.now() >= deadline) {
      const detail =
        'error' in last
          ? `last error: ${last.error instanceof Error ? last.error.message : inspect(last.error)}`
          : `last value: ${inspect(last.value)}`;
      throw new Error(`${message} (timed out after ${timeoutMs} ms; ${detail})`, {
        cause: 'error' in last ? last.error : undefined,
      });
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------- PostgreSQL

export interface TestDatabase {
  /** postgresql:// URL of the fresh database. */
  url: string;
  name: string;
  /** Terminates leftover connections and drops the database. Safe to call twice. */
  drop(): Promise<void>;
}

/** Runs `fn` with a short-lived client connected to `url`. */
export async function withPgClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty database `lobby_test_<random>` on the admin server. */
export async function createDatabase(adminUrl: string = pgAdminUrl()): Promise<TestDatabase> {
  const name = uniqueId('lobby_test');
  await withPgClient(adminUrl, async (c) => {
    // 55006 "source database template1 is being accessed by other users": transient, retry.
    for (let attempt = 1; ; attempt++) {
      try {
        await c.query(`CREATE DATABASE "${name}"`);
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== '55006' || attempt >= 20) throw err;
        await sleep(50 * attempt);
      }
    }
  });
  const url = new URL(adminUrl.replace(/^postgres(ql)?:/, 'postgresql:'));
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () =>
      withPgClient(adminUrl, async (c) => {
        // Kill sessions the code under test left open, then drop (FORCE covers races, PG 13+).
        await c.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [name],
        );
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      }),
  };
}

// ---------------------------------------------------------------- NATS

export interface PrivateNats {
  url: string;
  port: number;
  storeDir: string;
  /**
   * Graceful shutdown (SIGTERM). Also deletes the store dir if startPrivateNats created it;
   * after that restart() throws. Pass your own `storeDir` to stop() and restart() with data kept.
   */
  stop(): Promise<void>;
  /** SIGKILL, simulates a crash. Port and store dir are kept for restart(). */
  kill(): Promise<void>;
  /** Starts the server again on the same port and store dir (stops it first if running). */
  restart(): Promise<void>;
}

export interface PrivateNatsOptions {
  /** Enable JetStream (default true). */
  jetstream?: boolean;
  /** Fixed port; default a free one. */
  port?: number;
  /** JetStream store dir; default a temp dir removed by stop(). */
  storeDir?: string;
}

/** Path of the nats-server binary: /usr/sbin/nats-server, else the first on PATH. */
export function natsServerBinary(): string {
  const candidates = ['/usr/sbin/nats-server'];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir) candidates.push(join(dir, 'nats-server'));
  }
  for (const file of candidates) {
    try {
      accessSync(file, fsConstants.X_OK);
      return file;
    } catch {
      // try the next one
    }
  }
  throw new Error(`nats-server binary not found (looked at ${candidates.join(', ')})`);
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

// Safety net: never leave a nats-server behind if a test process exits without stop().
const liveServers = new Set<ChildProcess>();
process.once('exit', () => {
  for (const proc of liveServers) proc.kill('SIGKILL');
});

function waitExit(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

/** Spawns nats-server and waits (max 10 s) until its client port accepts connections. */
async function spawnNats(bin: string, port: number, storeDir: string, jetstream: boolean) {
  // Something else listening there would make the readiness poll below lie.
  if (await tcpAccepts(port)) throw new Error(`nats-server: port ${port} is already in use`);
  const args = ['-a', '127.0.0.1', '-p', String(port)];
  if (jetstream) args.push('-js', '-sd', storeDir);
  const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  liveServers.add(proc);
  proc.once('exit', () => liveServers.delete(proc));
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  let spawnError: Error | undefined;
  proc.once('error', (err) => (spawnError = err));
  const fail = async (why: string): Promise<never> => {
    proc.kill('SIGKILL');
    await waitExit(proc);
    throw new Error(`nats-server ${args.join(' ')}: ${why}\n--- stderr ---\n${stderr}`);
  };

  const deadline = Date.now() + 10_000;
  for (;;) {
    // Check for early death first: otherwise another process on the port would look "ready".
    if (spawnError) return fail(`spawn failed: ${spawnError.message}`);
    if (proc.exitCode !== null || proc.signalCode !== null) {
      return fail(`exited early (code ${proc.exitCode}, signal ${proc.signalCode})`);
    }
    if (await tcpAccepts(port)) return proc;
    if (Date.now() > deadline) return fail('port did not accept connections within 10 s');
    await sleep(20);
  }
}

/** Starts a private nats-server (JetStream on by default) on 127.0.0.1. */
export async function startPrivateNats(opts: PrivateNatsOptions = {}): Promise<PrivateNats> {
  const bin = natsServerBinary();
  const jetstream = opts.jetstream ?? true;
  const ownsStoreDir = opts.storeDir === undefined;
  const storeDir = opts.storeDir ?? (await mkdtemp(join(tmpdir(), 'nats-test-')));

  let port = opts.port ?? (await freePort());
  let proc: ChildProcess;
  try {
    try {
      proc = await spawnNats(bin, port, storeDir, jetstream);
    } catch (err) {
      if (opts.port !== undefined) throw err;
      // The free port may have been taken in the meantime: one more try on a new one.
      port = await freePort();
      proc = await spawnNats(bin, port, storeDir, jetstream);
    }
  } catch (err) {
    if (ownsStoreDir) await rm(storeDir, { recursive: true, force: true });
    throw err;
  }

  let removed = false;
  const halt = async (signal: NodeJS.Signals) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = waitExit(proc);
    proc.kill(signal);
    // A graceful stop that hangs gets a SIGKILL after 5 s.
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    async stop() {
      await halt('SIGTERM');
      if (ownsStoreDir && !removed) {
        removed = true;
        await rm(storeDir, { recursive: true, force: true });
      }
    },
    kill: () => halt('SIGKILL'),
    async restart() {
      if (removed) {
        throw new Error('PrivateNats.restart() after stop(): its temp store dir is gone (use kill())');
      }
      await halt('SIGTERM');
      await mkdir(storeDir, { recursive: true });
      proc = await spawnNats(bin, port, storeDir, jetstream);
    },
  };
}
