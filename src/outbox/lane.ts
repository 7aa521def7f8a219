/**
 * One lobby's lane in the relay: the rows queued for delivery, in id order, and what the relay
 * knows of that lobby. Pure bookkeeping; the relay (relay.ts) does the I/O.
 *
 * The rule that keeps a lobby in order: rows are appended only when they follow on from `tail`
 * with nothing undelivered in between. Two kinds of input do:
 * - a database read of the lobby's undelivered rows: a lobby's ids commit in id order (its row
 *   lock), so what one snapshot shows of a lobby is a gap-free run from its oldest undelivered
 *   row; the part above `tail` follows on from it;
 * - a handed batch whose `prevEventId` the lane already has (or null: the lobby's first events).
 * Anything else (a batch after a gap, or input while the lane is `behind`) is not appended: the
 * relay reads the lobby's rows after `tail` from the database instead, where they are.
 */
import type { EventRow, HandedBatch } from './event-row.js';

/** Input that waits while a read of the lane is in flight, applied in arrival order after it. */
export type LaneInput = { hand: HandedBatch } | { read: EventRow[] };

export interface Lane {
  readonly lobbyId: string;
  /** Highest id delivered or queued (0: the lane starts at the lobby's oldest undelivered row). */
  tail: number;
  /** Rows to deliver, ascending ids, all <= tail. */
  queue: EventRow[];
  /** Undelivered rows above `tail` may exist that are not queued: read them once the queue drains. */
  behind: boolean;
  /** A database read for this lane is in flight; input waits in `waiting`. */
  loading: boolean;
  waiting: LaneInput[];
  /** A delivery loop runs. */
  driving: boolean;
  /** Consecutive failures (delivery or read); sets the back-off. */
  failures: number;
  /** The back-off before the next attempt. */
  retry?: NodeJS.Timeout;
  /** Last time the lane got input or delivered (for dropping idle lanes). */
  lastActive: number;
}

export function newLane(lobbyId: string, tail: number): Lane {
  return {
    lobbyId,
    tail,
    queue: [],
    behind: false,
    loading: false,
    waiting: [],
    driving: false,
    failures: 0,
    lastActive: Date.now(),
  };
}

/**
 * Appends the rows above `tail`, which must follow on from it. At `maxQueue` queued rows the
 * lane stops taking rows and turns `behind` (the rest stays in the database).
 */
export function append(lane: Lane, rows: readonly EventRow[], maxQueue: number): void {
  lane.lastActive = Date.now();
  for (const row of rows) {
    if (row.id <= lane.tail) continue;
    if (lane.queue.length >= maxQueue) {
      lane.behind = true;
      return;
    }
    lane.queue.push(row);
    lane.tail = row.id;
  }
}

/** Whether a handed batch follows on from what the lane has (so it can be appended as is). */
export function follows(lane: Lane, batch: HandedBatch): boolean {
  return !lane.behind && (batch.prevEventId === null || batch.prevEventId <= lane.tail);
}

/** Whether the lane holds nothing and does nothing, so dropping it loses no work. */
export function isIdle(lane: Lane): boolean {
  return (
    lane.queue.length === 0 &&
    lane.waiting.length === 0 &&
    !lane.behind &&
    !lane.loading &&
    !lane.driving &&
    lane.retry === undefined
  );
}
