/**
 * Fires session deadlines (and presence grace periods) on whichever replica sees them first.
 *
 * Wake times live in the database (`measurement_sessions.wake_at`), so a deadline that passed
 * while the service was down fires soon after it comes back. Every replica polls; a `tick` is
 * a step like any other, so when two replicas fire the same deadline the second finds the
 * phase already failed and changes nothing: each deadline fires exactly once.
 */
import type { Logger } from 'pino';
import { retriedFailure } from '../errors.js';
import { startRequestTrace } from '../tracing/trace.js';
import type { DueSession, Sessions } from './sessions.js';

export class DeadlineScheduler {
  private running = false;
  private loop?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private wakeNow?: () => void;
  private wakeAt?: (at: number) => void;
  private nextAt = Infinity;
  /** The earliest wake time nudged while a scan was running (no sleep to re-arm). */
  private pendingAt = Infinity;
  /** Ticks that changed a session (fired deadlines), since start. */
  fired = 0;
  /** Failed scans and ticks, since start. */
  failures = 0;
  /** Failures since the last pass without one. */
  private streak = 0;
  /** Told of each deadline this replica fired, by kind (`timeout`, ..., `next_speaker`); metrics. */
  onFired: (kind: string) => void = () => undefined;

  constructor(
    private readonly sessions: Sessions,
    private readonly log: Logger,
    /** Longest sleep: bounds how late a deadline set by another replica is noticed. */
    private readonly pollMs = 1_000,
  ) {
    sessions.onWake = (at) => this.nudge(at);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /**
   * A session now wakes at `at`: re-arm the sleep to end then if that is sooner. Not "wake
   * now": the nudge comes from inside the transaction that sets `at`, so a scan started now
   * could miss the uncommitted wake time and sleep a whole poll past the deadline.
   */
  nudge(at: number): void {
    if (at >= this.nextAt) return;
    if (this.wakeAt) this.wakeAt(at);
    else this.pendingAt = Math.min(this.pendingAt, at);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wakeNow?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let sleepMs = this.pollMs;
      const failedBefore = this.failures;
      try {
        const due = await this.sessions.due(Date.now());
        const results = await Promise.allSettled(due.map((d) => this.fire(d)));
        for (const [i, r] of results.entries()) {
          const { sessionId, lobbyId } = due[i]!;
          if (r.status === 'rejected') this.failed(r.reason, 'deadline tick failed; will retry', { session_id: sessionId, lobby_id: lobbyId });
          else if (r.value) this.fired++;
        }
        const next = await this.sessions.nextWake();
        if (next !== null) sleepMs = Math.max(0, Math.min(this.pollMs, next - Date.now()));
        // A failed tick keeps its wake time in the past: back off instead of spinning.
        if (results.some((r) => r.status === 'rejected')) sleepMs = Math.max(sleepMs, 200);
      } catch (err) {
        this.failed(err, 'deadline scan failed; will retry');
        sleepMs = this.pollMs;
      }
      if (this.failures === failedBefore) this.streak = 0;
      if (!this.running) break;
      await this.sleep(sleepMs);
    }
  }

  /**
   * A failure to retry: at debug while the database is out of reach (its monitor logs that),
   * else the first of a streak at warn.
   */
  private failed(err: unknown, msg: string, fields: Record<string, unknown> = {}): void {
    this.failures++;
    const { level, fields: why } = retriedFailure(err, this.streak++ === 0);
    this.log[level]({ ...why, ...fields }, msg);
  }

  /**
   * Ticks one due session, as a trace of its own (its broadcasts carry it). Resolves whether the
   * tick was accepted.
   */
  private async fire({ sessionId, lobbyId }: DueSession): Promise<boolean> {
    const trace = startRequestTrace();
    const { reply, fired } = await this.sessions.tick(sessionId, { traceparent: trace.traceparent });
    if (fired !== null) {
      this.onFired(fired);
      this.log.info(
        { session_id: sessionId, lobby_id: lobbyId, fired, phase: reply.phase, trace_id: trace.traceId, span_id: trace.spanId },
        'session deadline fired',
      );
    }
    return reply.status === 'accepted';
  }

  private sleep(ms: number): Promise<void> {
    this.nextAt = Math.min(Date.now() + ms, this.pendingAt);
    this.pendingAt = Infinity;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(this.timer);
        this.wakeNow = undefined;
        this.wakeAt = undefined;
        this.nextAt = Infinity;
        resolve();
      };
      this.timer = setTimeout(done, Math.max(0, this.nextAt - Date.now()));
      this.wakeNow = done;
      this.wakeAt = (at) => {
        clearTimeout(this.timer);
        this.nextAt = at;
        this.timer = setTimeout(done, Math.max(0, at - Date.now()));
      };
    });
  }
}
