/**
 * The database health monitor. Every statement that fails without a SQLSTATE of its own (the
 * server did not answer the statement: a driver error, a lost connection, a pool that cannot
 * connect) is reported here; the monitor then pings the server on a connection of its own.
 *
 * - Unreachable: one `database unreachable` line, a reminder every 30 s, pings every second
 *   until it answers (or a statement succeeds), then one `database reachable again` line with
 *   the outage's length.
 *   Components that fail meanwhile log at debug: this is the line an operator reads.
 * - The dispatcher's error mapping asks `explains(err)` about a failure it would otherwise call
 *   `internal`: a reported failure while the database was unreachable is `unavailable`.
 */
import type { Logger } from 'pino';
import { isConnectionSqlState, reasonOf, sqlStateOf, type ReachabilityJudge } from '../errors.js';
import { Outage } from '../outage.js';

export interface HealthOptions {
  /** Pause between pings while the database is unreachable. */
  pingEveryMs?: number;
  /** A ping that has not answered by then counts as failed. */
  pingTimeoutMs?: number;
  /** Reminder while it stays unreachable. */
  reminderMs?: number;
}

/** Whether a failed statement's error says nothing of the statement itself (so: report it). */
export function isReportable(err: unknown): boolean {
  const state = sqlStateOf(err);
  return state === undefined || isConnectionSqlState(state);
}

export class DatabaseHealth implements ReachabilityJudge {
  private readonly outage: Outage;
  private readonly reported = new WeakSet<object>();
  private checking?: Promise<boolean>;
  private retry?: NodeJS.Timeout;
  private stopped = false;
  /** When a succeeding statement last ended an outage. */
  private upSince = 0;
  private readonly pingEveryMs: number;
  private readonly pingTimeoutMs: number;

  constructor(
    /** Resolves when the server answers a trivial statement on a fresh connection. */
    private readonly probe: () => Promise<void>,
    log: Logger,
    opts: HealthOptions = {},
  ) {
    this.pingEveryMs = opts.pingEveryMs ?? 1_000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 2_000;
    this.outage = new Outage(
      log,
      'database',
      { down: 'database unreachable', still: 'database still unreachable', back: 'database reachable again' },
      opts.reminderMs,
    );
  }

  /** False from the first failed ping until one succeeds again. */
  get reachable(): boolean {
    return !this.outage.down;
  }

  /** A statement failed without a SQLSTATE of its own: check the server (once, however many report). */
  report(err: unknown): void {
    if (typeof err === 'object' && err !== null) this.reported.add(err);
    if (this.outage.down) this.outage.count();
    else void this.check(err);
  }

  /**
   * A statement sent at `sentAt` (Date.now()) succeeded: the database is reachable, and the
   * outage ends without waiting for a ping. Not if it was sent before the outage began: an answer
   * already on its way when the server died says nothing about now.
   */
  succeeded(sentAt: number): void {
    if (!this.outage.down || sentAt < this.outage.since) return;
    clearTimeout(this.retry);
    this.retry = undefined;
    this.upSince = Date.now();
    this.outage.end();
  }

  async explains(err: unknown): Promise<boolean> {
    if (!this.wasReported(err)) return false;
    if (this.outage.down) return true;
    return !(await this.check(err));
  }

  /** Pings now, or joins the ping under way; true when the database answered. */
  check(cause?: unknown): Promise<boolean> {
    const startedAt = Date.now();
    this.checking ??= this.ping()
      .then((failure) => {
        if (failure === null) this.outage.end();
        // A statement succeeded since this ping was sent: its failure is old news.
        else if (startedAt < this.upSince) return true;
        else if (!this.stopped) {
          // `failures` counts failed statements, not pings.
          if (!this.outage.down) {
            this.outage.begin({ reason: reasonOf(failure), ...(cause === undefined ? {} : { failed_statement: reasonOf(cause) }) });
          }
          this.scheduleRetry();
        }
        return failure === null;
      })
      .finally(() => (this.checking = undefined));
    return this.checking;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.outage.stop();
  }

  private scheduleRetry(): void {
    if (this.retry || this.stopped) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      // A failed ping schedules the next one.
      void this.check();
    }, this.pingEveryMs);
    this.retry.unref();
  }

  /** null when the server answered, else why not. */
  private async ping(): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<Error>((resolve) => {
      timer = setTimeout(() => resolve(new Error(`no answer within ${this.pingTimeoutMs} ms`)), this.pingTimeoutMs);
    });
    try {
      return await Promise.race([this.probe().then(() => null, (err: unknown) => err ?? new Error('ping failed')), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private wasReported(err: unknown): boolean {
    for (let e = err as { cause?: unknown } | null | undefined, i = 0; e && typeof e === 'object' && i < 8; i++, e = e.cause as typeof e) {
      if (this.reported.has(e)) return true;
    }
    return false;
  }
}
