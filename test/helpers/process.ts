/**
 * Runs the service as a real child process (`node --import tsx src/main.ts`), for tests that
 * must SIGKILL it or check its exit on SIGTERM. Readiness is the "lobby service ready" log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './infra.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export interface ServiceProcess {
  pid: number;
  /** Parsed JSON log lines so far. */
  logs: LogLine[];
  /** Raw stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (or the signal name) once the process exits. */
  exited: Promise<number | string>;
  /** The "lobby service ready" line (has `startup_ms` and `http`). */
  ready: LogLine;
  kill(signal: NodeJS.Signals): void;
}

/** Starts the service with `env` (merged over a minimal PATH/HOME) and waits until it is ready. */
export async function spawnService(env: Record<string, string>, timeoutMs = 30_000): Promise<ServiceProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    // Readiness and shutdown are read from the logs: never run quieter than info.
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const logs: LogLine[] = [];
  let err = '';
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
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
  const ready = await Promise.race([
    waitFor(() => logs.find((l) => l.msg === 'lobby service ready'), {
      timeoutMs,
      message: 'waiting for the service process to be ready',
    }),
    exited.then((code) => {
      throw new Error(`service exited (${code}) before it was ready: ${err.trim()}`);
    }),
  ]).catch((e) => {
    child.kill('SIGKILL');
    throw e;
  });
  return {
    pid: child.pid!,
    logs,
    stderr: () => err,
    exited,
    ready,
    kill: (signal) => child.kill(signal),
  };
}
