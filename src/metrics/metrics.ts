/**
 * Prometheus metrics (`GET /metrics`, prom-client). One `Metrics` per app: the counters and
 * histograms the hot path updates (cheap in-memory increments, never a query), and gauges
 * collected at scrape time from `ScrapeSources` (where one cheap query per scrape is fine).
 * Every family is named in `METRIC_NAMES` and described in the README ("Metrics").
 *
 * Across replicas: each replica exports what it did (requests, deliveries, deadlines it fired,
 * its pool). The database-wide gauges (`lobby_sessions`, `lobby_outbox_backlog`) are counted
 * in the shared database, so every replica reports the same figure: aggregate them with
 * `max`, not `sum`.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import { Phase, SessionFailure } from '../../subjects/index.js';
import type { EventRow } from '../outbox/event-row.js';
import { retriedFailure } from '../errors.js';

export const METRIC_PREFIX = 'lobby_';

/** The families this service exports (besides prom-client's default process metrics). */
export const METRIC_NAMES = {
  requests: 'lobby_requests_total',
  requestDuration: 'lobby_request_duration_seconds',
  broadcastLatency: 'lobby_request_broadcast_seconds',
  sessions: 'lobby_sessions',
  deadlinesFired: 'lobby_deadlines_fired_total',
  outboxBacklog: 'lobby_outbox_backlog',
  publishLag: 'lobby_outbox_publish_lag_seconds',
  rateLimited: 'lobby_rate_limited_total',
  natsReconnects: 'lobby_nats_reconnects_total',
  dbPool: 'lobby_db_pool_connections',
  dbErrors: 'lobby_db_errors_total',
} as const;

/** knex's tarn pool, as the scrape reads it. */
export interface PoolStats {
  used: number;
  free: number;
  /** Acquires waiting for a connection. */
  pending: number;
  max: number;
}

/** What the scrape-time gauges read. Each may fail (database down): its gauge is then left empty. */
export interface ScrapeSources {
  /** Unfinished sessions per phase, database-wide. */
  sessionsByPhase?: () => Promise<Record<string, number>>;
  /** Undelivered outbox rows per destination (`jetstream`, `gateway-sink`), database-wide. */
  outboxBacklog?: () => Promise<Record<string, number>>;
  /** This replica's database pool (null: no pool, e.g. the embedded database). */
  dbPool?: () => PoolStats | null;
}

/** Phases of unfinished sessions (`completed` / `cancelled` are those of finished ones). */
const UNFINISHED_PHASES = Phase.options.filter((p) => p !== 'completed' && p !== 'cancelled');

/** Request latencies: a local command takes milliseconds; the tail shows the database. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Outbox lags: milliseconds normally, seconds to minutes across an outage. */
const LAG_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * prom-client's default process metrics describe the process, not an app: one registry per
 * process (tests run several apps in one), created on first use and merged into every scrape.
 */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: METRIC_PREFIX });
  }
  return processRegistry;
}

export class Metrics {
  readonly registry = new Registry();
  /** Requests by subject (aliases under their target) and outcome (`ok` or the error code). */
  readonly requests: Counter<'subject' | 'outcome'>;
  readonly requestDuration: Histogram<'subject'>;
  /** A request's arrival at the dispatcher -> its first broadcast acked by JetStream. */
  readonly broadcastLatency: Histogram<'subject'>;
  /** Deadlines a tick fired on this replica: timeout, device_disconnected, next_speaker. */
  readonly deadlinesFired: Counter<'kind'>;
  /** An event's commit -> its delivery acked (JetStream ack, the Gateway's 2xx). */
  readonly publishLag: Histogram<'destination'>;
  /** Refusals of the abuse limits: `token_bucket`, `join_codes`. */
  readonly rateLimited: Counter<'kind'>;
  readonly natsReconnects: Counter;
  /** Failed statements, by SQLSTATE (or the driver's error code). */
  readonly dbErrors: Counter<'code'>;
  private sources: ScrapeSources = {};

  constructor(private readonly log?: Logger) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: METRIC_NAMES.requests,
      help: 'Requests served (NATS and HTTP), by subject and outcome (ok or the error code)',
      labelNames: ['subject', 'outcome'],
      registers,
    });
    this.requestDuration = new Histogram({
      name: METRIC_NAMES.requestDuration,
      help: 'Time from a request reaching the dispatcher to its outcome, by subject',
      labelNames: ['subject'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.broadcastLatency = new Histogram({
      name: METRIC_NAMES.broadcastLatency,
      help: "Time from a request (e.g. a session step) reaching the dispatcher to its first broadcast acked by JetStream, by subject",
      labelNames: ['subject'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.deadlinesFired = new Counter({
      name: METRIC_NAMES.deadlinesFired,
      help: 'Session deadlines fired by this replica, by kind (timeout, device_disconnected, next_speaker)',
      labelNames: ['kind'],
      registers,
    });
    this.publishLag = new Histogram({
      name: METRIC_NAMES.publishLag,
      help: "Time from an event's commit to its delivery being acked, by destination (jetstream, gateway-sink)",
      labelNames: ['destination'],
      buckets: LAG_BUCKETS,
      registers,
    });
    this.rateLimited = new Counter({
      name: METRIC_NAMES.rateLimited,
      help: 'Requests refused by the abuse limits, by kind (token_bucket, join_codes)',
      labelNames: ['kind'],
      registers,
    });
    this.natsReconnects = new Counter({
      name: METRIC_NAMES.natsReconnects,
      help: 'Times the NATS connection came back after a disconnect',
      registers,
    });
    this.dbErrors = new Counter({
      name: METRIC_NAMES.dbErrors,
      help: 'Database statements that failed, by SQLSTATE or driver error code',
      labelNames: ['code'],
      registers,
    });
    // Known label values start at 0, so a first increment shows as a rate.
    for (const kind of ['token_bucket', 'join_codes']) this.rateLimited.inc({ kind }, 0);
    for (const kind of [SessionFailure.timeout, SessionFailure.device_disconnected, 'next_speaker']) this.deadlinesFired.inc({ kind }, 0);
    const self = this;
    new Gauge({
      name: METRIC_NAMES.sessions,
      help: 'Unfinished measurement sessions by phase, database-wide (every replica reports the same: use max)',
      labelNames: ['phase'],
      registers,
      async collect() {
        const counts = await self.read('sessions', self.sources.sessionsByPhase);
        this.reset();
        if (!counts) return;
        // Every phase an unfinished session can be in, 0 when none is.
        for (const phase of UNFINISHED_PHASES) this.set({ phase }, 0);
        for (const [phase, n] of Object.entries(counts)) this.set({ phase }, n);
      },
    });
    new Gauge({
      name: METRIC_NAMES.outboxBacklog,
      help: 'Outbox rows not yet delivered, by destination, database-wide (every replica reports the same: use max)',
      labelNames: ['destination'],
      registers,
      async collect() {
        const counts = await self.read('outbox backlog', self.sources.outboxBacklog);
        this.reset();
        for (const [destination, n] of Object.entries(counts ?? {})) this.set({ destination }, n);
      },
    });
    new Gauge({
      name: METRIC_NAMES.dbPool,
      help: "This replica's database pool connections, by state (used, free, pending acquires, max)",
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        const pool = self.sources.dbPool?.();
        if (!pool) return;
        for (const state of ['used', 'free', 'pending', 'max'] as const) this.set({ state }, pool[state]);
      },
    });
  }

  /** Where the scrape-time gauges read from (set once the app has its database and relays). */
  setSources(sources: ScrapeSources): void {
    this.sources = sources;
  }

  /**
   * An outbox row's delivery was acked: its publish lag, and for JetStream the latency from the
   * request that caused it, when the row is the first broadcast of that request (`origin`).
   */
  delivered(destination: 'jetstream' | 'gateway-sink', row: EventRow): void {
    this.publishLag.observe({ destination }, Math.max(0, Date.now() - row.createdAt.getTime()) / 1000);
    if (destination === 'jetstream' && row.origin) {
      this.broadcastLatency.observe({ subject: row.origin.subject }, (performance.now() - row.origin.receivedAt) / 1000);
    }
  }

  /** Counts a failed statement (`Sql`'s error hook). */
  dbError(err: unknown): void {
    const code = (err as { code?: unknown } | null)?.code;
    this.dbErrors.inc({ code: typeof code === 'string' && code !== '' ? code : 'other' });
  }

  /** The exposition text of this app's families and the process metrics. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    const parts = await Promise.all([this.registry.metrics(), processMetrics().metrics()]);
    return { contentType: this.registry.contentType, body: parts.join('\n') };
  }

  /** A scrape-time source's value, or undefined (logged) when it failed: the scrape goes on. */
  private async read<T>(what: string, source: (() => Promise<T>) | undefined): Promise<T | undefined> {
    if (!source) return undefined;
    try {
      return await source();
    } catch (err) {
      // While the database is down this fails on every scrape: its monitor tells the outage.
      const { level, fields } = retriedFailure(err, true);
      this.log?.[level]({ ...fields, metric: what }, 'metrics: scrape-time source failed');
      return undefined;
    }
  }
}
