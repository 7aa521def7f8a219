/**
 * Outbox relay: delivers `lobby_events` rows to a destination (the JetStream stream, or the
 * v1 Gateway sink) in id order per lobby, and marks them delivered.
 *
 * - Ordering: a lobby's rows are delivered one after another; a failure stops that lobby's
 *   batch, so a later event is never delivered before an earlier one. Lobbies proceed in
 *   parallel.
 * - One relay at a time: with several replicas, a lease row (`leases`) elects the relay that
 *   delivers; the others stand by and take over when the lease expires.
 * - Nothing lost: rows stay undelivered until the destination accepted them; after a crash or
 *   an outage they are delivered on the next pass (at least once; the destination dedupes).
 */
import type { Logger } from 'pino';
import { LobbyEventEntity, type LobbyEventRow } from '../db/entities.js';
import type { Database } from '../db/orm.js';
import { Lease } from './lease.js';

export interface Destination {
  /** Lease and log name, e.g. `jetstream:LOBBY_EVENTS`. */
  name: string;
  /** The row column that records delivery. */
  column: 'publishedAt' | 'sinkDeliveredAt';
  /**
   * Delivers one lobby's events, in the order given. Returns how many of them (a prefix) were
   * delivered; throws or returns fewer to stop at a failure.
   */
  deliver(events: LobbyEventRow[]): Promise<number>;
}

export interface RelayOptions {
  /** Rows read per pass. */
  batch?: number;
  /** Idle poll interval (catches rows written by other replicas). */
  pollMs?: number;
  leaseMs?: number;
  /** Longest back-off after failures. */
  maxBackoffMs?: number;
  /** This replica's lease holder id. */
  holder: string;
  /** Called when this replica wrote events but another one holds the lease. */
  onStandbyNotify?: () => void;
}

export class OutboxRelay {
  private readonly lease: Lease;
  private running = false;
  private loop?: Promise<void>;
  private wake?: () => void;
  private wakeBackoff?: () => void;
  private kicked = false;
  private retryRequested = false;
  private failures = 0;
  private leader = false;
  private readonly opts: Required<Omit<RelayOptions, 'onStandbyNotify'>> & Pick<RelayOptions, 'onStandbyNotify'>;
  /** Delivered rows since start (for logs, health and benchmarks). */
  delivered = 0;

  constructor(
    private readonly db: Database,
    private readonly dest: Destination,
    private readonly log: Logger,
    opts: RelayOptions,
  ) {
    // A short lease: after a crash of the relaying replica, another takes over within seconds.
    this.opts = { batch: 500, pollMs: 250, leaseMs: 5_000, maxBackoffMs: 5_000, ...opts };
    this.lease = new Lease(db, `relay:${dest.name}`, this.opts.holder, this.opts.leaseMs);
  }

  get isLeader(): boolean {
    return this.leader;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Wakes the relay now (after a local commit that wrote events). */
  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  /**
   * Ends a failure back-off at once (the destination is back, e.g. NATS reconnected). Also
   * when it comes while the failing pass is still unwinding: the back-off that follows is
   * skipped, not waited out.
   */
  retryNow(): void {
    this.kicked = true;
    this.retryRequested = true;
    this.wakeBackoff?.();
  }

  /** `kick`, and tell the lease holder if that is another replica. */
  notify(): void {
    this.kick();
    if (!this.leader) this.opts.onStandbyNotify?.();
  }

  /**
   * Stops the relay. With `flushMs`, first keeps delivering until nothing is pending (or the
   * time is up), so a clean shutdown leaves no broadcast behind.
   */
  async stop(flushMs = 0): Promise<void> {
    if (!this.running) return;
    if (flushMs > 0) {
      const deadline = Date.now() + flushMs;
      while (Date.now() < deadline && this.leader && (await this.pending()) > 0) {
        this.kick();
        await sleep(20);
      }
    }
    this.running = false;
    this.wake?.();
    await this.loop;
    await this.lease.release().catch(() => undefined);
  }

  /** Rows not yet delivered to this destination. */
  async pending(): Promise<number> {
    return this.db.read((em) => em.count(LobbyEventEntity, { [this.dest.column]: null }));
  }

  private async run(): Promise<void> {
    while (this.running) {
      let more = false;
      try {
        this.leader = await this.lease.acquire();
        if (this.leader) more = await this.pass();
        if (this.failures > 0) this.log.info({ destination: this.dest.name }, 'relay recovered');
        this.failures = 0;
      } catch (err) {
        this.failures++;
        // The first failure of a streak is a warning with the cause; repeats are quieter.
        const level = this.failures === 1 ? 'warn' : 'debug';
        this.log[level]({ err, destination: this.dest.name, failures: this.failures }, 'relay pass failed; will retry');
      }
      if (!this.running) break;
      if (this.failures > 0) {
        await this.idle(Math.min(this.opts.maxBackoffMs, 50 * 2 ** Math.min(this.failures, 10)), false);
      } else if (!more) {
        await this.idle(this.opts.pollMs, true);
      }
    }
  }

  /** One pass: read a batch, deliver per lobby in parallel. Returns whether more may wait. */
  private async pass(): Promise<boolean> {
    this.kicked = false;
    // A retry asked for before this pass began is this pass.
    this.retryRequested = false;
    const rows = await this.db.read((em) =>
      em.find(LobbyEventEntity, { [this.dest.column]: null }, { orderBy: { id: 'asc' }, limit: this.opts.batch }),
    );
    if (rows.length === 0) return false;
    const byLobby = new Map<string, LobbyEventRow[]>();
    for (const r of rows) {
      const list = byLobby.get(r.lobbyId);
      if (list) list.push(r);
      else byLobby.set(r.lobbyId, [r]);
    }
    const results = await Promise.allSettled([...byLobby.values()].map((events) => this.deliverLobby(events)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return rows.length === this.opts.batch;
  }

  private async deliverLobby(events: LobbyEventRow[]): Promise<void> {
    // Never start delivering on a lease about to lapse: another replica may take it over, and two
    // relays publishing one lobby at once could interleave its events.
    if (this.lease.remainingMs() < this.opts.leaseMs / 3) throw new Error('relay lease about to expire; renewing first');
    let done = 0;
    let error: unknown;
    try {
      done = await this.dest.deliver(events);
    } catch (err) {
      error = err;
      done = (err as { delivered?: number }).delivered ?? 0;
    }
    if (done > 0) {
      const ids = events.slice(0, done).map((e) => e.id);
      // One autocommit statement: no transaction round trips on the hot path.
      await this.db.read((em) =>
        em.nativeUpdate(LobbyEventEntity, { id: { $in: ids } }, { [this.dest.column]: new Date() }),
      );
      this.delivered += done;
    }
    if (error) throw error;
    if (done < events.length) throw new Error(`${this.dest.name}: delivered ${done} of ${events.length}`);
  }

  private idle(ms: number, wakeOnKick: boolean): Promise<void> {
    if (wakeOnKick && this.kicked) return Promise.resolve();
    if (!wakeOnKick && this.retryRequested) {
      this.retryRequested = false;
      return Promise.resolve();
    }
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

/** Thrown by a destination to say how many events it delivered before failing. */
export class PartialDelivery extends Error {
  constructor(
    readonly delivered: number,
    cause: unknown,
  ) {
    super(`delivery stopped after ${delivered} event(s)`, { cause });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
