/**
 * Outbox relay: delivers `lobby_events` rows to a destination (the JetStream stream, or the
 * v1 Gateway sink) in id order per lobby, and marks them delivered.
 *
 * - Fast path: after its commit the command path hands the new rows over (`hand`); the lease
 *   holder delivers them at once, with no database read, when they follow on from what it
 *   already has of that lobby (lane.ts says when).
 * - Safety path: a scan of undelivered rows, periodic and on kicks (`kick`, and other replicas'
 *   `_lobby.outbox.kick`), picks up whatever was not handed over: other replicas' commits, a
 *   backlog after an outage or a restart.
 * - Ordering: each lobby has one lane; its rows go out one after another, each after the previous
 *   one's ack. A failure stops that lane (its queue kept) until a retry with back-off; lanes run
 *   in parallel.
 * - One relay at a time: with several replicas, a lease row (`leases`) elects the relay that
 *   delivers; the others stand by and take over when the lease expires. Losing the lease drops
 *   every lane; the next holder starts from the database.
 * - Marks: acked ids are marked in batches (marks.ts). Nothing is lost: a row stays undelivered
 *   until the destination accepted it; after a crash it is delivered again (at least once; the
 *   destination dedupes).
 */
import type { Logger } from 'pino';
import type { Database } from '../db/orm.js';
import { retriedFailure } from '../errors.js';
import type { EventRow, HandedBatch, OutboxColumn } from './event-row.js';
import { LeaseExpiring, Lanes } from './lanes.js';
import { Lease } from './lease.js';
import { MarkBuffer } from './marks.js';
import { OutboxStore, type SqlRunner } from './store.js';

export type { EventRow, HandedBatch } from './event-row.js';

export interface Destination {
  /** Lease and log name, e.g. `jetstream:LOBBY_EVENTS`. */
  name: string;
  /** The row column that records delivery. */
  column: OutboxColumn;
  /** Delivers one event; resolves once the destination accepted it (JetStream ack, a 2xx). */
  deliver(event: EventRow): Promise<void>;
}

export interface RelayOptions {
  /** This replica's lease holder id. */
  holder: string;
  /** Rows per database read. */
  batch?: number;
  /** Safety scan interval (catches rows nobody handed over, e.g. other replicas'). */
  pollMs?: number;
  leaseMs?: number;
  /** Longest back-off after failures. */
  maxBackoffMs?: number;
  /** Longest wait between an ack and its mark. */
  markDelayMs?: number;
  /** Marks flushed at once when this many acks wait. */
  markBatch?: number;
  /** Rows a lane keeps in memory; beyond, it reads them from the database as it goes. */
  maxQueue?: number;
  /** A lane idle this long is dropped (its lobby is checked in the database when next met). */
  idleLaneMs?: number;
  /** Called when this replica wrote events but another one holds the lease. */
  onStandbyNotify?: () => void;
  /** Called after each delivery the destination accepted (metrics: lags); must not throw. */
  onDelivered?: (row: EventRow) => void;
  /** The statements' runner (default `db.sql.priority`; tests wrap it to count statements). */
  sql?: SqlRunner;
}

type Settings = Required<Omit<RelayOptions, 'onStandbyNotify' | 'onDelivered' | 'sql'>>;
type Hooks = Pick<RelayOptions, 'onStandbyNotify' | 'onDelivered' | 'sql'>;

export class OutboxRelay {
  private readonly opts: Settings;
  private readonly hooks: Hooks;
  private readonly store: OutboxStore;
  private readonly lease: Lease;
  private readonly marks: MarkBuffer;
  private readonly lanes: Lanes;
  private running = false;
  private leader = false;
  private loop?: Promise<void>;
  private wake?: () => void;
  private wakeBackoff?: () => void;
  private kicked = false;
  /** `retryNow` came while a pass was failing: skip the back-off that follows. */
  private retryRequested = false;
  /** Consecutive failed control-loop passes (lease, scan). */
  private failures = 0;
  /** The level the current streak's first failure was logged at. */
  private streakLevel: 'warn' | 'debug' = 'warn';
  /** Safety scans run (for tests and benchmarks). */
  scans = 0;

  constructor(
    db: Database,
    private readonly dest: Destination,
    private readonly log: Logger,
    opts: RelayOptions,
  ) {
    this.hooks = opts;
    // A short lease: after a crash of the relaying replica, another takes over within seconds.
    this.opts = {
      batch: 500,
      pollMs: 500,
      leaseMs: 5_000,
      maxBackoffMs: 5_000,
      markDelayMs: 25,
      markBatch: 200,
      maxQueue: 1_000,
      idleLaneMs: 60_000,
      ...stripUndefined(opts),
      holder: opts.holder,
    };
    // The relay's own statements use the pool's reserved connections: broadcasts do not wait
    // behind a burst of commands for a lease renewal, a scan or a mark.
    const sql = opts.sql ?? db.sql.priority;
    this.store = new OutboxStore(sql, dest.column);
    this.lease = new Lease(sql, `relay:${dest.name}`, this.opts.holder, this.opts.leaseMs);
    this.marks = new MarkBuffer(this.store, log, {
      delayMs: this.opts.markDelayMs,
      maxIds: this.opts.markBatch,
      maxBackoffMs: this.opts.maxBackoffMs,
    });
    this.lanes = new Lanes({
      store: this.store,
      dest,
      marks: this.marks,
      log,
      active: () => this.running && this.leader,
      checkLease: () => {
        // Never start a delivery on a lease about to lapse: another replica may take it over,
        // and two relays delivering one lobby at once could interleave its events.
        if (this.lease.remainingMs() < this.opts.leaseMs / 3) throw new LeaseExpiring('relay lease about to expire');
      },
      backoff: (failures) => this.backoff(failures),
      batch: this.opts.batch,
      maxQueue: this.opts.maxQueue,
      onDelivered: opts.onDelivered,
    });
  }

  /** Delivered rows since start (for logs, health and benchmarks). */
  get delivered(): number {
    return this.lanes.delivered;
  }

  /** Database reads of full rows for lanes (gaps, lobbies met for the first time, backlogs). */
  get reads(): number {
    return this.lanes.reads;
  }

  get isLeader(): boolean {
    return this.leader;
  }

  /** Mark statements run, and rows they marked. */
  get markStats(): { flushes: number; marked: number } {
    return { flushes: this.marks.flushes, marked: this.marks.marked };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /**
   * A commit's rows of one lobby, handed over right after the commit. The lease holder delivers
   * them at once when they follow on from what it has of the lobby, else it reads the lobby's
   * rows first; a standby only tells the lease holder. Never throws, never waits.
   */
  hand(batch: HandedBatch): void {
    if (!this.running || batch.rows.length === 0) return;
    if (!this.leader) {
      this.hooks.onStandbyNotify?.();
      return;
    }
    this.lanes.hand(batch);
  }

  /** Wakes the safety scan now (after a commit that wrote events). A standby has nothing to scan. */
  kick(): void {
    if (!this.leader) return;
    this.kicked = true;
    this.wake?.();
  }

  /** Ends every back-off at once (the destination is back, e.g. NATS reconnected). */
  retryNow(): void {
    if (this.leader) this.kicked = true;
    this.retryRequested = true;
    this.wakeBackoff?.();
    this.lanes.retryNow();
  }

  /** `kick`, and tell the lease holder if that is another replica. */
  notify(): void {
    this.kick();
    if (!this.leader) this.hooks.onStandbyNotify?.();
  }

  /**
   * Stops the relay. With `flushMs`, first keeps delivering until nothing is pending (or the
   * time is up), so a clean shutdown leaves no broadcast behind. Marks what was delivered and
   * gives the lease up.
   */
  async stop(flushMs = 0): Promise<void> {
    if (!this.running) return;
    const deadline = Date.now() + flushMs;
    while (Date.now() < deadline && this.leader) {
      const marked = await this.marks.flush();
      if (marked && this.lanes.idle && (await this.store.pending().catch(() => 1)) === 0) break;
      this.retryNow();
      await sleep(20);
    }
    this.running = false;
    this.wake?.();
    this.wakeBackoff?.();
    await this.loop;
    this.lanes.clear();
    // Deliveries under way end on their own (each has a timeout); their acks still get marked.
    await this.lanes.settled();
    await this.marks.flush();
    this.marks.close();
    await this.lease.release().catch(() => undefined);
    this.leader = false;
  }

  /** Rows not yet delivered to this destination (delivered but not yet marked included). */
  async pending(): Promise<number> {
    return this.store.pending();
  }

  // ------------------------------------------------------------------ control loop

  private async run(): Promise<void> {
    // The loop wakes for the lease (renewal, or a standby's next try) more often than it scans.
    const tick = Math.min(this.opts.pollMs, this.opts.leaseMs / 4);
    let nextScan = 0;
    while (this.running) {
      // A retry asked for before this pass began is this pass.
      this.retryRequested = false;
      try {
        // Past the lease's end another replica may have delivered: start over from the database.
        const remaining = this.lease.remainingMs();
        if (this.leader && remaining === 0) this.resign();
        const held = await this.lease.acquire();
        // Lanes that paused on a lease about to lapse go on now that it is renewed.
        if (held && this.leader && remaining < this.opts.leaseMs / 3) this.lanes.retryNow();
        if (held && !this.leader) {
          await this.lead();
          nextScan = 0;
        } else if (!held && this.leader) this.resign();
        if (!this.leader) this.kicked = false;
        else if (this.kicked || Date.now() >= nextScan) {
          const more = await this.scan();
          // A full batch: the next one at once (the scan leaves out what the lanes have).
          nextScan = more ? 0 : Date.now() + this.opts.pollMs;
        }
        // Said at the level its streak's first failure was (debug for a database outage).
        if (this.failures > 0) this.log[this.streakLevel === 'warn' ? 'info' : 'debug']({ destination: this.dest.name }, 'relay recovered');
        this.failures = 0;
      } catch (err) {
        this.failures++;
        // The first failure of a streak is a warning; repeats, and database outages (the
        // database's monitor logs those), are quieter. Expected failures carry no stack.
        const { level, fields } = retriedFailure(err, this.failures === 1);
        if (this.failures === 1) this.streakLevel = level;
        this.log[level]({ ...fields, destination: this.dest.name, failures: this.failures }, 'relay pass failed; will retry');
      }
      if (!this.running) break;
      if (this.failures > 0) await this.idle(this.backoff(this.failures), false);
      // While deliveries fail (the destination is down) kicks would only queue more: scan on the
      // clock, until a delivery succeeds again or `retryNow`.
      else if (this.lanes.failing) await this.idle(Math.max(this.opts.pollMs, 1_000), false);
      else await this.idle(this.leader ? Math.max(0, Math.min(tick, nextScan - Date.now())) : tick, true);
    }
  }

  /** Took the lease: first mark what an earlier term delivered, so no check sees it undelivered. */
  private async lead(): Promise<void> {
    if (!(await this.marks.flush())) throw new Error('relay: marks from an earlier lease term not flushed yet');
    this.lanes.clear();
    this.leader = true;
    this.log.debug({ destination: this.dest.name }, 'relay lease taken');
  }

  private resign(): void {
    this.leader = false;
    // Loops, reads and retries of the dropped lanes see they are no longer current and stop.
    this.lanes.clear();
    this.log.debug({ destination: this.dest.name }, 'relay lease lost; lanes dropped');
  }

  /**
   * The safety scan: one read of the oldest undelivered rows no lane has yet (other replicas'
   * commits, commits only kicked, a backlog). Returns whether it read a full batch (more may wait).
   */
  private async scan(): Promise<boolean> {
    this.kicked = false;
    this.scans++;
    const known = this.lanes.known(this.marks.idle ? Date.now() : this.marks.coveredUntil);
    const rows = await this.store.scan(this.opts.batch, known.tails);
    if (this.leader && this.running) this.lanes.read(rows, known.lanes);
    // Lanes idle for `idleLaneMs` are dropped once their marks are written.
    const covered = this.marks.idle ? Date.now() : this.marks.coveredUntil;
    this.lanes.dropIdle(Math.min(Date.now() - this.opts.idleLaneMs, covered));
    return rows.length === this.opts.batch;
  }

  private backoff(failures: number): number {
    return Math.min(this.opts.maxBackoffMs, 50 * 2 ** Math.min(failures, 10));
  }

  private idle(ms: number, wakeOnKick: boolean): Promise<void> {
    if (wakeOnKick && this.kicked) return Promise.resolve();
    if (!wakeOnKick && this.retryRequested) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = wakeOnKick ? done : () => (this.running ? undefined : done());
      this.wakeBackoff = done;
    });
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
