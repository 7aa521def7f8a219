/**
 * The simulator's live view: sessions by phase, outcomes, refused requests and requests/s.
 * On a terminal it is redrawn in place about five times a second; otherwise (a pipe, a CI log)
 * it prints one plain line every few seconds.
 */
import type { Measurement } from './measurement.js';
import type { TransportCounters } from './transport.js';

/** Where a run is, from what the view can see. */
export interface ProgressSnapshot {
  elapsedMs: number;
  /** Running sessions by stage (set-up stage or session phase). */
  running: Record<string, number>;
  completed: number;
  failed: number;
  stalled: number;
  /** Refused or lost requests so far. */
  errors: number;
  requests: number;
}

const DONE = new Set(['completed', 'failed', 'stalled']);

export function snapshot(measurements: readonly Measurement[], counters: TransportCounters, elapsedMs: number): ProgressSnapshot {
  const running: Record<string, number> = {};
  const done = { completed: 0, failed: 0, stalled: 0 };
  for (const m of measurements) {
    if (DONE.has(m.stage)) done[m.stage as keyof typeof done]++;
    else running[m.stage] = (running[m.stage] ?? 0) + 1;
  }
  return { elapsedMs, running, ...done, errors: counters.errors, requests: counters.requests };
}

/** The view's lines for one snapshot; `rate` is requests/s since the previous one. */
export function progressLines(s: ProgressSnapshot, rate: number): string[] {
  const stages = Object.entries(s.running)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([stage, n]) => `${stage} ${n}`)
    .join(' | ');
  const runningCount = Object.values(s.running).reduce((a, b) => a + b, 0);
  return [
    `[${(s.elapsedMs / 1000).toFixed(1)} s] running ${runningCount}${stages ? `: ${stages}` : ''}`,
    `  completed ${s.completed}  failed ${s.failed}  stalled ${s.stalled}  refused requests ${s.errors}  ${Math.round(rate)} req/s`,
  ];
}

export class ProgressView {
  private timer?: NodeJS.Timeout;
  private drawn = 0;
  private last = { at: 0, requests: 0 };
  private readonly started = performance.now();

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly read: (elapsedMs: number) => ProgressSnapshot,
  ) {}

  start(): void {
    const tty = this.out.isTTY === true;
    this.timer = setInterval(() => this.draw(tty), tty ? 200 : 2000);
    this.timer.unref();
  }

  /** Draws a last time and stops; on a terminal the final view stays on screen. */
  stop(): void {
    clearInterval(this.timer);
    if (this.out.isTTY) this.draw(true);
  }

  private draw(tty: boolean): void {
    const now = performance.now();
    const s = this.read(now - this.started);
    const seconds = (now - this.last.at) / 1000 || 1;
    const rate = this.last.at === 0 ? s.requests / Math.max(s.elapsedMs / 1000, 0.001) : (s.requests - this.last.requests) / seconds;
    this.last = { at: now, requests: s.requests };
    const lines = progressLines(s, rate);
    if (!tty) {
      this.out.write(`${lines.join('')}\n`);
      return;
    }
    // Back to the first line of the previous drawing, clear to the end, draw again.
    const up = this.drawn > 0 ? `\x1b[${this.drawn}F\x1b[J` : '';
    this.out.write(`${up}${lines.join('\n')}\n`);
    this.drawn = lines.length;
  }
}
