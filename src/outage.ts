/**
 * What an operator reads while a dependency (the database, NATS) is down: one line when it goes
 * down, a reminder every `reminderMs` while it stays down, and one line when it is back, with
 * the outage's length. Everything that fails meanwhile because of it is counted here instead of
 * being logged one line each.
 */
import type { Logger } from 'pino';

const DEFAULT_REMINDER_MS = 30_000;

export class Outage {
  private startedAt: number | null = null;
  private failures = 0;
  private reminder?: NodeJS.Timeout;

  constructor(
    private readonly log: Logger,
    /** The dependency's name, in each line's `dependency` field. */
    private readonly dependency: string,
    private readonly lines: { down: string; still: string; back: string },
    private readonly reminderMs = DEFAULT_REMINDER_MS,
  ) {}

  get down(): boolean {
    return this.startedAt !== null;
  }

  /** When the current outage began (Date.now()); Infinity while up. */
  get since(): number {
    return this.startedAt ?? Infinity;
  }

  /** Milliseconds since it went down (0 while up). */
  get downMs(): number {
    return this.startedAt === null ? 0 : Date.now() - this.startedAt;
  }

  /** It is down: logs the first call of an outage (with `fields`), counts the others. */
  begin(fields: Record<string, unknown> = {}): void {
    if (this.startedAt !== null) {
      this.failures++;
      return;
    }
    this.startedAt = Date.now();
    this.failures = 0;
    this.log.warn({ dependency: this.dependency, ...fields }, this.lines.down);
    this.reminder = setInterval(() => {
      this.log.warn({ dependency: this.dependency, down_ms: this.downMs, failures: this.failures }, this.lines.still);
    }, this.reminderMs);
    this.reminder.unref();
  }

  /** Counts a failure caused by the outage (nothing is logged for it). */
  count(): void {
    if (this.startedAt !== null) this.failures++;
  }

  /** It is back: logs the outage's length, if it was down. */
  end(fields: Record<string, unknown> = {}): void {
    if (this.startedAt === null) return;
    const outage_ms = Date.now() - this.startedAt;
    clearInterval(this.reminder);
    this.startedAt = null;
    this.log.info({ dependency: this.dependency, outage_ms, failures: this.failures, ...fields }, this.lines.back);
  }

  /** Stops the reminder (shutdown). */
  stop(): void {
    clearInterval(this.reminder);
  }
}
