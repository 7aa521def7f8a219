/**
 * Development convenience, the NATS twin of the embedded database: when `NATS_URL` is not set
 * and nothing listens on the default 127.0.0.1:4222, start a local `nats-server` with
 * JetStream (data in ./data/nats) if one is installed, and stop it again on shutdown.
 * With `NATS_URL` set this never runs: production always names its servers.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { delimiter, join } from 'node:path';
import type { Logger } from 'pino';

const HOST = '127.0.0.1';
const PORT = 4222;

function reachable(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function findNatsServer(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/bin'];
  for (const dir of dirs) {
    const candidate = join(dir, 'nats-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Returns a stop function when it started a server, undefined otherwise. */
export async function startDevNatsIfNeeded(
  env: Record<string, string | undefined>,
  log: Logger,
): Promise<(() => Promise<void>) | undefined> {
  if (env.NATS_URL) return undefined;
  if (await reachable(HOST, PORT)) return undefined;
  const bin = findNatsServer();
  if (!bin) {
    log.error(`NATS is not reachable at nats://${HOST}:${PORT} and no nats-server is installed: install nats-server, run "docker compose up nats", or set NATS_URL`);
    return undefined;
  }
  const dir = join('data', 'nats');
  mkdirSync(dir, { recursive: true });
  const child = spawn(bin, ['-a', HOST, '-p', String(PORT), '-js', '-sd', dir], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; i < 100 && !(await reachable(HOST, PORT)); i++) await new Promise((r) => setTimeout(r, 50));
  log.info({ pid: child.pid, store: dir }, `started a local nats-server for development on nats://${HOST}:${PORT}`);
  return async () => {
    child.kill('SIGTERM');
    await exited;
  };
}
