/**
 * The lease holder's lanes, one per lobby: input in (handed batches, database reads), deliveries
 * out, one row at a time per lobby, each after the previous one's ack; lobbies in parallel.
 * A failure stops its lane, queue kept, until a retry after a back-off (or `retryNow`).
 *
 * The relay (relay.ts) owns the lease and the safety scan; it drops every lane (`clear`) when it
 * loses the lease, and loops, reads and retries of dropped lanes stop on their own.
 */
import type { Logger } from 'pino';
import { retriedFailure } from '../errors.js';
import type { EventRow, HandedBatch } from './event-row.js';
import { append, follows, isIdle, newLane, type Lane, type LaneInput } from './lane.js';
import type { MarkBuffer } from './marks.js';
import type { Destination } from './relay.js';
import type { KnownTails, OutboxStore } from './store.js';

export interface LanesContext {
  store: OutboxStore;
  dest: Destination;
  marks: MarkBuffer;
  log: Logger;
  /** Whether lanes may work: the relay runs and holds the lease. */
  active(): boolean;
  /** Throws when the lease is too close to lapsing to start a delivery. */
  checkLease(): void;
  /** Back-off after this many consecutive failures. */
  backoff(failures: number): number;
  /** Rows per database read. */
  batch: number;
  /** Rows a lane keeps in memory. */
  maxQueue: number;
  /** Called after each accepted delivery (metrics); must not throw. */
  onDelivered?: (row: EventRow) => void;
}

export class Lanes {
  private lanes = new Map<string, Lane>();
  private readonly busy = new Set<Promise<void>>();
  /** Deliveries are failing (logged once per streak). */
  private failingNow = false;
  /** When the current streak of failed deliveries began. */
  private failingSince = 0;
  /**
   * Bumped by `retryNow`. A delivery or read that fails after a bump made while it was under
   * way retries at once: the signal (reconnect, new stream leader) often comes in the same tick
   * as the failure it caused, before the lane has a back-off to cut short.
   */
  private retries = 0;
  /** Delivered rows since start. */
  delivered = 0;
  /** Database reads of full rows for lanes (gaps, lobbies met for the first time, backlogs). */
  reads = 0;

  constructor(private readonly ctx: LanesContext) {}

  /** Takes a handed batch (the caller holds the lease). */
  hand(batch: HandedBatch): void {
    const lane = this.lanes.get(batch.lobbyId);
    if (lane) return this.input(lane, { hand: batch });
    const fresh = newLane(batch.lobbyId, 0);
    this.lanes.set(batch.lobbyId, fresh);
    // The lobby's first events: nothing can be missing before them.
    if (batch.prevEventId === null) return this.input(fresh, { hand: batch });
    // A lobby not met since start-up or the lease: one indexed check for older undelivered rows;
    // only if there are, read them before the batch.
    const prev = batch.prevEventId;
    fresh.waiting.push({ hand: batch });
    this.load(fresh, async () => {
      if (!(await this.ctx.store.hasOlder(batch.lobbyId, batch.rows[0]!.id))) {
        fresh.tail = prev;
        return [];
      }
      this.reads++;
      return this.ctx.store.lobbyAfter(batch.lobbyId, 0, this.ctx.batch);
    });
  }

  /**
   * What the scan may leave out: lanes with work in hand (queued, reading, behind: `behind`
   * lanes read for themselves, so all their rows) or acks not yet marked (active since
   * `unmarkedSince`). Returns their tails for the query, and the lanes as they are now.
   */
  known(unmarkedSince: number): { tails: KnownTails; lanes: Map<string, Lane> } {
    const out = { tails: new Map<string, number>(), lanes: new Map<string, Lane>() };
    for (const lane of this.lanes.values()) {
      if (isIdle(lane) && lane.lastActive < unmarkedSince) continue;
      out.tails.set(lane.lobbyId, lane.behind ? Number.MAX_SAFE_INTEGER : lane.tail);
      out.lanes.set(lane.lobbyId, lane);
    }
    return out;
  }

  /**
   * Takes the scan's rows: per lobby, its undelivered rows in id order, from the oldest one or,
   * for a lobby in `left` (what `known` returned), from above that lane's tail at the time. The
   * latter follow on only from that very lane: if it was dropped since (lease lost), the new lane
   * may lack rows below that tail, so they are left to the next scan.
   */
  read(rows: readonly EventRow[], left: Map<string, Lane>): void {
    const runs = new Map<string, EventRow[]>();
    for (const r of rows) {
      const run = runs.get(r.lobbyId);
      if (run) run.push(r);
      else runs.set(r.lobbyId, [r]);
    }
    for (const [lobbyId, run] of runs) {
      let lane = this.lanes.get(lobbyId);
      const was = left.get(lobbyId);
      if (was && lane !== was) continue;
      if (!lane) this.lanes.set(lobbyId, (lane = newLane(lobbyId, 0)));
      this.input(lane, { read: run });
    }
  }

  /** Deliveries are failing (since the last success). */
  get failing(): boolean {
    return this.failingNow;
  }

  /** Ends every lane's back-off at once, and skips those of failures under way. */
  retryNow(): void {
    this.retries++;
    for (const lane of this.lanes.values()) {
      if (lane.retry === undefined) continue;
      clearTimeout(lane.retry);
      lane.retry = undefined;
      this.resume(lane);
    }
  }

  /** Drops every lane (the lease is lost or the relay stops). */
  clear(): void {
    for (const lane of this.lanes.values()) clearTimeout(lane.retry);
    this.lanes = new Map();
  }

  /**
   * Forgets lanes idle since before `before` (ms): the check `hand` makes when it next meets the
   * lobby must not find this relay's own deliveries still unmarked, so `before` must be covered
   * by the marks.
   */
  dropIdle(before: number): void {
    for (const [id, lane] of this.lanes) if (isIdle(lane) && lane.lastActive < before) this.lanes.delete(id);
  }

  /** No lane holds or does anything. */
  get idle(): boolean {
    for (const lane of this.lanes.values()) if (!isIdle(lane)) return false;
    return true;
  }

  /** Waits for the deliveries and reads under way (each has its own timeout). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.busy]);
  }

  // ------------------------------------------------------------------ one lane

  private current(lane: Lane): boolean {
    return this.ctx.active() && this.lanes.get(lane.lobbyId) === lane;
  }

  private input(lane: Lane, input: LaneInput): void {
    if (lane.loading) {
      lane.waiting.push(input);
      return;
    }
    if ('read' in input) append(lane, input.read, this.ctx.maxQueue);
    else if (follows(lane, input.hand)) append(lane, input.hand.rows, this.ctx.maxQueue);
    else if (!lane.behind) {
      // A gap (rows this relay never saw, e.g. another replica's): read the lobby's rows after
      // the tail, which include this batch (committed before it was handed over).
      lane.waiting.push(input);
      this.loadAfterTail(lane);
      return;
    }
    // else: behind; the batch is in the database and will be read in turn.
    this.resume(lane);
  }

  private loadAfterTail(lane: Lane): void {
    this.load(lane, () => {
      this.reads++;
      return this.ctx.store.lobbyAfter(lane.lobbyId, lane.tail, this.ctx.batch);
    });
  }

  /** Runs one read for the lane; input arriving meanwhile waits and is applied after it. */
  private load(lane: Lane, read: () => Promise<EventRow[]>): void {
    lane.loading = true;
    this.track(
      (async () => {
        let rows: EventRow[] = [];
        const retries = this.retries;
        try {
          rows = await read();
          lane.behind = false;
        } catch (err) {
          // Retried with back-off; the lane's input is in the database meanwhile.
          lane.behind = true;
          this.failed(lane, err, retries);
        }
        lane.loading = false;
        if (!this.current(lane)) return;
        append(lane, rows, this.ctx.maxQueue);
        // A full read may have left more behind it.
        if (rows.length >= this.ctx.batch) lane.behind = true;
        const waiting = lane.waiting;
        lane.waiting = [];
        for (const input of waiting) this.input(lane, input);
        this.resume(lane);
      })(),
    );
  }

  /** Continues a lane: delivers its queue, or reads what it is behind on once the queue is empty. */
  private resume(lane: Lane): void {
    if (!this.current(lane) || lane.driving || lane.loading || lane.retry !== undefined) return;
    if (lane.queue.length > 0) this.track(this.drive(lane));
    else if (lane.behind) this.loadAfterTail(lane);
  }

  /** Delivers the lane's queue one row at a time, each after the previous one's ack. */
  private async drive(lane: Lane): Promise<void> {
    lane.driving = true;
    let retries = this.retries;
    try {
      for (let row = lane.queue[0]; row && this.current(lane); row = lane.queue[0]) {
        retries = this.retries;
        this.ctx.checkLease();
        await this.ctx.dest.deliver(row);
        lane.queue.shift();
        lane.failures = 0;
        lane.lastActive = Date.now();
        this.ctx.marks.add(row.id);
        this.delivered++;
        this.ctx.onDelivered?.(row);
        if (this.failingNow) {
          this.failingNow = false;
          this.ctx.log.info({ destination: this.ctx.dest.name, outage_ms: Date.now() - this.failingSince }, 'relay delivering again');
        }
      }
    } catch (err) {
      this.failed(lane, err, retries);
    } finally {
      lane.driving = false;
    }
    this.resume(lane);
  }

  /**
   * Stops the lane until a retry after its back-off (or `retryNow`); at once if `retryNow` came
   * since `retries` (the attempt's start).
   */
  private failed(lane: Lane, err: unknown, retries: number): void {
    lane.failures++;
    if (!(err instanceof LeaseExpiring)) {
      // The first failure of a streak is a warning (without a stack when the destination is
      // merely away); repeats are quieter.
      const { level, fields } = retriedFailure(err, !this.failingNow);
      if (!this.failingNow) this.failingSince = Date.now();
      this.failingNow = true;
      this.ctx.log[level]({ ...fields, destination: this.ctx.dest.name, lobby_id: lane.lobbyId }, 'relay delivery failed; will retry');
    }
    if (!this.current(lane)) return;
    lane.retry = setTimeout(
      () => {
        lane.retry = undefined;
        this.resume(lane);
      },
      retries === this.retries ? this.ctx.backoff(lane.failures) : 0,
    );
  }

  private track(job: Promise<void>): void {
    this.busy.add(job);
    void job.finally(() => this.busy.delete(job));
  }
}

/** The lease is close to lapsing: deliver nothing until it is renewed (not a delivery failure). */
export class LeaseExpiring extends Error {
  override readonly name = 'LeaseExpiring';
}
