/**
 * Runs the service as a real child process (`node --import tsx src/main.ts`), for tests that
 * must SIGKILL it or check its exit on SIGTERM. Readiness is the "lobby service ready" log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { waitFor } from './infra.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const running = new Set<ChildProcess>();
const killAll = () => {
  for (const c of running) c.kill('SIGKILL');
};
// No service process outlives its test file: not when a test fails half-way (afterAll), not
// when the worker exits, and not when vitest terminates the worker with a signal (no 'exit'
// event then: an orphan would keep reconnecting forever and outlive the run).
afterAll(killAll);
process.once('exit', killAll);
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export interface ServiceProcess {
  pid: number;
  /** Parsed JSON log lines so far. */
  logs: LogLine[];
  /** Raw stdout so far (every byte, parsed or not). */
  stdout(): string;
  /** Raw stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (or the signal name) once the process exits. */
  exited: Promise<number | string>;
  kill(signal: NodeJS.Signals): void;
}

/** Starts the service with `env` (merged over a minimal PATH/HOME) without waiting for anything. */
export function startServiceProcess(env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    // Readiness and shutdown are read from the logs: never run quieter than info.
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const logs: LogLine[] = [];
  let out = '';
  let err = '';
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ level: 'raw', msg: line });
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve(code ?? signal ?? -1);
    }),
  );
  return {
    pid: child.pid!,
    logs,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (signal) => child.kill(signal),
  };
}

/** Starts the service with `env` and waits until it is ready. */
export async function spawnService(
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<ServiceProcess & { /** The "lobby service ready" line (has `startup_ms` and `http`). */ ready: LogLine }> {
  const svc = startServiceProcess(env);
  const ready = await Promise.race([
    waitFor(() => svc.logs.find((l) => l.msg === 'lobby service ready'), {
      timeoutMs,
      message: 'waiting for the service process to be ready',
    }),
    svc.exited.then((code) => {
      throw new Error(`service exited (${code}) before it was ready: ${svc.stderr().trim()} ${svc.stdout().trim().split('\n').at(-1) ?? ''}`);
    }),
  ]).catch((e) => {
    svc.kill('SIGKILL');
    throw e;
  });
  return { ...svc, ready };
}
