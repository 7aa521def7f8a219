/**
 * Delivery marks, batched: the relay remembers each acked id here, and one `update ... where id =
 * any($1)` marks a whole batch (after `delayMs`, or at once when `maxIds` are waiting), instead of
 * one statement per event.
 *
 * A crash between an ack and its flush leaves the row unmarked: it is delivered again after the
 * restart, and the destination deduplicates it (JetStream's `Nats-Msg-Id`, the sink's
 * `X-Event-Id`). So a lost batch costs a duplicate delivery, never a lost event.
 */
import type { Logger } from 'pino';
import { retriedFailure } from '../errors.js';
import type { OutboxStore } from './store.js';

export interface MarkOptions {
  /** Longest wait between an ack and its mark. */
  delayMs: number;
  /** Flush at once when this many ids wait. */
  maxIds: number;
  /** Longest wait before retrying a failed flush. */
  maxBackoffMs: number;
}

export class MarkBuffer {
  private ids: number[] = [];
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<boolean>;
  private failures = 0;
  /** Statements run (successful flushes). */
  flushes = 0;
  /** Rows marked by them. */
  marked = 0;
  /** Every id added before this time (ms) is marked: the start of the last successful flush. */
  coveredUntil = 0;

  constructor(
    private readonly store: OutboxStore,
    private readonly log: Logger,
    private readonly opts: MarkOptions,
  ) {}

  /** Nothing waits to be marked and no flush is under way. */
  get idle(): boolean {
    return this.ids.length === 0 && !this.flushing;
  }

  /** Remembers a delivered id; it is marked within `delayMs`. */
  add(id: number): void {
    this.ids.push(id);
    if (this.ids.length >= this.opts.maxIds) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.opts.delayMs);
  }

  /** Marks everything remembered so far. Resolves false when the statement failed (kept, retried). */
  async flush(): Promise<boolean> {
    // One statement at a time: a second caller waits for the running one, then takes the rest.
    while (this.flushing) await this.flushing;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.ids.length === 0) {
      this.coveredUntil = Date.now();
      return true;
    }
    // Failed batches go back into `ids`, so this batch holds every unmarked id added before now.
    const startedAt = Date.now();
    const batch = this.ids;
    this.ids = [];
    this.flushing = this.store.mark(batch).then(
      () => {
        this.flushes++;
        this.marked += batch.length;
        this.failures = 0;
        this.coveredUntil = startedAt;
        return true;
      },
      (err: unknown) => {
        // Keep them (before any newer ones) and try again later; until then they stay unmarked,
        // which at worst delivers them twice after a crash.
        this.ids = batch.concat(this.ids);
        this.failures++;
        const { level, fields } = retriedFailure(err, this.failures === 1);
        this.log[level]({ ...fields, ids: batch.length }, 'marking delivered events failed; will retry');
        this.timer ??= setTimeout(
          () => void this.flush(),
          Math.min(this.opts.maxBackoffMs, this.opts.delayMs * 2 ** Math.min(this.failures, 10)),
        );
        return false;
      },
    );
    try {
      return await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  /** Stops the timer (the caller flushes first). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
