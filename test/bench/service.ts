/**
 * The service under test as a real child process, run from the built output
 * (`node [flags] dist/src/main.js`), so that its resident memory (VmRSS) and its restarts
 * (SIGKILL, then a fresh start) are those of production. Ready = the first request on its own
 * subject prefix is answered (LOG_LEVEL=warn hides the "ready" log line, and `$SRV.PING` would
 * also be answered by other services on a shared NATS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Subject } from '../../subjects/index.js';
import { CommandError, type Caller } from './client.js';
import { since } from './stats.js';

/** The repository root (this file runs as dist/test/bench/service.js). */
export const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const MAIN = 'dist/src/main.js';

const live = new Set<ChildProcess>();

/** Every service process started by this run: its pid and when it answered first. */
export const launched: { pid: number; readyAtUs: number }[] = [];
/** `process.hrtime` in microseconds: the clock of V8's .cpuprofile timestamps. */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);
// Never leave a service behind when the bench itself dies.
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface SpawnOptions {
  env: Record<string, string>;
  /** Extra node flags, e.g. `--cpu-prof` for `npm run profile`. */
  nodeArgs?: string[];
  /** The bench's caller on the service's prefix, used to probe readiness. */
  probe: Caller;
  timeoutMs?: number;
}

export class ServiceProcess {
  /** Log lines by `level: msg` (the service logs at warn: these are warnings and errors). */
  private readonly messages = new Map<string, { count: number; first: string }>();
  /** The last log lines and stderr, for a failure report. */
  private readonly tail: string[] = [];
  readonly exited: Promise<number | string>;

  private constructor(
    private readonly child: ChildProcess,
    /** Milliseconds from spawn until the first request was answered. */
    public startupMs = 0,
  ) {
    live.add(child);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        live.delete(child);
        resolve(code ?? signal ?? -1);
      }),
    );
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.line(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => this.keep(`stderr: ${chunk.trimEnd()}`));
  }

  static async start(opts: SpawnOptions): Promise<ServiceProcess> {
    const t0 = performance.now();
    const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), MAIN], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const svc = new ServiceProcess(child);
    let gone: number | string | undefined;
    void svc.exited.then((c) => (gone = c));
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    for (;;) {
      if (gone !== undefined) throw new Error(`service exited (${gone}) before it was ready:\n${svc.recent()}`);
      try {
        // Any reply, lobby_not_found included, means the endpoints are subscribed.
        await opts.probe.call(Subject['lobby.get'], 'bench-probe', { code: 'AAAAAA' }, 1_000);
        break;
      } catch (err) {
        if (err instanceof CommandError) break;
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`service not ready after ${opts.timeoutMs ?? 60_000} ms:\n${svc.recent()}`);
      }
      await sleep(10);
    }
    svc.startupMs = since(t0);
    launched.push({ pid: svc.pid, readyAtUs: monotonicUs() });
    return svc;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resident set size in KiB (VmRSS of /proc/<pid>/status). */
  rssKiB(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    if (!m) throw new Error(`no VmRSS in /proc/${this.pid}/status`);
    return Number(m[1]);
  }

  /** Sends `signal` (e.g. SIGUSR2 to a child started with gc-on-signal.js). */
  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Crash: SIGKILL, resolves once the process is gone. */
  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Graceful stop (SIGTERM: drains, flushes the outbox; writes a --cpu-prof profile). */
  async stop(timeoutMs = 30_000): Promise<number | string> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  /**
   * Warnings and errors the service logged so far, by `level: msg`, each with its count and
   * its first line (with the error's message and stack), e.g. for `relay pass failed`.
   */
  logCounts(): Record<string, { count: number; first: string }> {
    return Object.fromEntries(this.messages);
  }

  recent(): string {
    return this.tail.join('\n');
  }

  private line(text: string): void {
    let key = `raw: ${text.slice(0, 80)}`;
    try {
      const l = JSON.parse(text) as { level?: unknown; msg?: unknown };
      key = `${String(l.level)}: ${String(l.msg)}`;
    } catch {
      // not JSON: kept as raw
    }
    // Bounded: a flood of distinct lines must not grow the bench's memory.
    const seen = this.messages.get(key);
    if (seen) seen.count++;
    else if (this.messages.size < 50) this.messages.set(key, { count: 1, first: text.slice(0, 2_000) });
    this.keep(text);
  }

  private keep(text: string): void {
    this.tail.push(text.length > 2_000 ? `${text.slice(0, 2_000)}...` : text);
    if (this.tail.length > 30) this.tail.shift();
  }
}
