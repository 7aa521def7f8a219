/**
 * Composition root: config -> database -> NATS -> handlers -> endpoints -> relays -> HTTP,
 * and the orderly shutdown in reverse. `main.ts` runs it as a process; tests run it in-process.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { InternalSubject } from '../subjects/index.js';
import type { Config } from './config.js';
import { failureFields, retriedFailure } from './errors.js';
import { Database } from './db/orm.js';
import { createHttpServer } from './http/server.js';
import { Lobbies } from './lobby/actor.js';
import { Metrics } from './metrics/metrics.js';
import { createLobbyHandlers } from './lobby/handlers.js';
import { createLobbyStore } from './lobby/store.js';
import { createMeasurementHandlers } from './measurement/handlers.js';
import { DeadlineScheduler } from './measurement/scheduler.js';
import { Sessions } from './measurement/sessions.js';
import { ensureStream, jetStreamDestination } from './outbox/jetstream.js';
import { OutboxRelay } from './outbox/relay.js';
import { gatewaySinkDestination } from './outbox/sink.js';
import { createTimelineStore } from './timeline/store.js';
import { Dispatcher, type HandlerTable } from './transport/dispatch.js';
import { IdempotencyStore } from './transport/idempotency.js';
import { SharedJoinFailures } from './transport/join-failures.js';
import { JoinGuard, TokenBuckets } from './transport/limits.js';
import { NatsService, connectNats, natsConnected } from './transport/nats.js';

export interface App {
  config: Config;
  db: Database;
  nc: NatsConnection;
  dispatcher: Dispatcher;
  http: FastifyInstance;
  /** The JetStream relay. After a commit, hand it the new rows (`relay.hand`). */
  relay: OutboxRelay;
  /** The v1 Gateway sink's relay (only with `GATEWAY_URL`); handed the same rows. */
  sink?: OutboxRelay;
  scheduler: DeadlineScheduler;
  sessions: Sessions;
  lobbies: Lobbies;
  /** Prometheus metrics (`GET /metrics`). */
  metrics: Metrics;
  /** `http://host:port` the shim listens on. */
  httpUrl: string;
  /**
   * Graceful stop: no new requests, finish in-flight ones, flush the outbox, drain, close.
   * Each step waits at most what is left of SHUTDOWN_TIMEOUT_MS; resolves `false` if one gave up.
   */
  stop(): Promise<boolean>;
  /** Where a shutdown is (for the log line when it times out), and NATS requests in flight. */
  shutdownProgress(): { step: string; nats_in_flight: number };
}

const IDEMPOTENCY_PURGE_MS = 10 * 60_000;

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export async function startApp(config: Config, log: Logger): Promise<App> {
  const started = performance.now();
  const metrics = new Metrics(log.child({ component: 'metrics' }));
  const db = await Database.open(config.database, log);
  db.sql.onError = (err) => metrics.dbError(err);
  const cleanup: Array<() => Promise<unknown>> = [() => db.close()];
  try {
    const waiting = setTimeout(
      () => log.warn({ servers: config.nats.servers }, 'still waiting for NATS (is nats-server running?)'),
      3_000,
    );
    const nc = await connectNats(config.nats, log).finally(() => clearTimeout(waiting));
    cleanup.unshift(() => nc.close());
    const jsm = await ensureStream(nc, config.nats, log);
    const joinFailures = await SharedJoinFailures.open(nc, config.nats, log.child({ component: 'join-guard' }));
    cleanup.unshift(async () => joinFailures.stop());

    const holder = `${process.pid}-${crypto.randomUUID()}`;
    const kickSubject = `${config.nats.subjectPrefix}${InternalSubject.outboxKick}`;
    let relay!: OutboxRelay;
    // The v1 Gateway sink (GATEWAY_URL): a second destination of the same outbox, own lease.
    const sink = config.gatewayUrl
      ? new OutboxRelay(
          db,
          gatewaySinkDestination({ gatewayUrl: config.gatewayUrl, token: config.gatewayToken }),
          log.child({ component: 'sink' }),
          { holder, onStandbyNotify: () => nc.publish(kickSubject), onDelivered: (row) => metrics.delivered('gateway-sink', row) },
        )
      : undefined;
    const lobbies = new Lobbies(createLobbyStore(db.sql), {
      sink: sink !== undefined,
      log: log.child({ component: 'lobbies' }),
      // Committed events go straight to the relays: published now when this replica holds
      // the lease, else the holder is woken to read them.
      onCommit: (batch) => {
        relay.hand(batch);
        sink?.hand(batch);
      },
    });
    // A new stream leader (its old node died): publish the backlog now, not after a back-off.
    const destination = jetStreamDestination(nc, jsm, config.nats, log.child({ component: 'relay' }), () => relay.retryNow());
    relay = new OutboxRelay(db, destination, log.child({ component: 'relay' }), {
      holder,
      onStandbyNotify: () => nc.publish(kickSubject),
      onDelivered: (row) => metrics.delivered('jetstream', row),
    });
    // Back from a NATS outage: publish the backlog now rather than at the end of a back-off.
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type !== 'reconnect') continue;
        metrics.natsReconnects.inc();
        relay.retryNow();
      }
    })();
    // Another replica wrote events while this one holds the lease: deliver them now.
    const kickSub = nc.subscribe(kickSubject, {
      callback: () => {
        relay.kick();
        sink?.kick();
      },
    });

    const sessions = new Sessions(lobbies, db.sql, config);
    const scheduler = new DeadlineScheduler(sessions, log.child({ component: 'deadlines' }));
    scheduler.onFired = (kind) => metrics.deadlinesFired.inc({ kind });
    const joinGuard = new JoinGuard(config.limits.joinFailuresPerMinute, joinFailures);
    joinGuard.onRefused = () => metrics.rateLimited.inc({ kind: 'join_codes' });
    const handlers: HandlerTable = {
      ...createLobbyHandlers({ lobbies, config, sessions, joinGuard }),
      ...createMeasurementHandlers({ lobbies, config, sessions }),
    };
    const idempotency = new IdempotencyStore(db.sql);
    const buckets = new TokenBuckets(config.limits.ratePerSecond, config.limits.rateBurst);
    buckets.onRefused = () => metrics.rateLimited.inc({ kind: 'token_bucket' });
    const dispatcher = new Dispatcher({ handlers, log, limits: buckets, idempotency, metrics, health: db.health });
    metrics.setSources({
      sessionsByPhase: () => sessions.unfinishedByPhase(),
      outboxBacklog: async () => {
        const [published, sunk] = await Promise.all([relay.pending(), sink?.pending()]);
        return { jetstream: published, ...(sunk === undefined ? {} : { 'gateway-sink': sunk }) };
      },
      dbPool: () => db.sql.poolStats(),
    });
    const service = new NatsService(nc, dispatcher, log.child({ component: 'nats' }), config.nats.subjectPrefix);

    const http = await createHttpServer({
      config,
      log,
      dispatcher,
      health: async () => ({ database: await db.ping(), nats: natsConnected(nc) }),
      timelines: createTimelineStore(db.sql),
      metrics: () => metrics.scrape(),
    });
    await http.listen({ host: config.http.host, port: config.http.port });
    const address = http.server.address();
    const port = typeof address === 'object' && address ? address.port : config.http.port;
    const httpUrl = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${port}`;

    // After a restart the phones of running sessions send their next steps at once: have their
    // lobbies cached before taking commands (one round trip for all, not one more per step).
    const warming = performance.now();
    const cachedLobbies = await lobbies.warm().catch((err: unknown) => {
      log.warn(failureFields(err), 'could not cache the lobbies of unfinished sessions; each loads on its next command');
      return 0;
    });
    const warmMs = Math.round(performance.now() - warming);
    service.start();
    // The server has every endpoint subscription before we call ourselves ready.
    await nc.flush();
    relay.start();
    sink?.start();
    scheduler.start();
    const purge = setInterval(() => {
      idempotency
        .purge()
        .then((n) => n && log.debug({ deleted: n }, 'expired idempotency keys purged'))
        .catch((err) => {
          const { level, fields } = retriedFailure(err, true);
          log[level](fields, 'idempotency purge failed');
        });
    }, IDEMPOTENCY_PURGE_MS);
    purge.unref();

    log.info(
      {
        startup_ms: Math.round(performance.now() - started),
        http: httpUrl,
        nats: config.nats.servers,
        stream: config.nats.stream,
        database: config.database.kind === 'postgresql' ? 'postgresql' : `embedded (${config.database.dir ?? 'memory'})`,
        cached_lobbies: cachedLobbies,
        cache_warm_ms: warmMs,
      },
      'lobby service ready',
    );

    let stopping: Promise<boolean> | undefined;
    let step = 'running';
    const stop = () =>
      (stopping ??= (async () => {
        const deadline = Date.now() + config.shutdownTimeoutMs;
        const left = () => Math.max(0, deadline - Date.now());
        let clean = true;
        /**
         * Runs one step, for at most what is left of the shutdown time. Once that is used up the
         * remaining steps are started but not waited for: the process is about to exit anyway.
         */
        const phase = async (name: string, work: () => Promise<unknown>) => {
          const running = work().catch((err) => log.warn({ err, step: name }, 'shutdown step failed'));
          if (!clean) return;
          step = name;
          const t0 = performance.now();
          const gaveUp = await Promise.race([running.then(() => false), delay(left()).then(() => true)]);
          log.debug({ step: name, ms: Math.round(performance.now() - t0) }, 'shutdown step done');
          if (gaveUp) {
            clean = false;
            log.warn({ step: name, nats_in_flight: service.inFlight }, 'shutdown: gave up waiting');
          }
        };
        log.info({ timeout_ms: config.shutdownTimeoutMs }, 'shutting down: no new requests');
        clearInterval(purge);
        // HTTP first (new connections refused, answers in flight sent), while NATS still serves.
        await phase('HTTP requests in flight', () => http.close().catch((err) => log.warn({ err }, 'HTTP close failed')));
        await phase('NATS requests in flight', () => service.stop(left()));
        await phase('deadline scheduler', () => scheduler.stop());
        await phase('lobby mailboxes', () => lobbies.idle());
        joinFailures.stop();
        // A closed connection cannot publish: flushing would only spin until the deadline.
        const flushMs = nc.isClosed() ? 0 : left();
        await phase('outbox flush', () => Promise.all([relay.stop(flushMs), sink?.stop(flushMs)]));
        kickSub.unsubscribe();
        if (!nc.isClosed()) await phase('NATS drain', () => nc.drain().catch((err) => log.warn({ err }, 'NATS drain failed')));
        await phase('database close', () => db.close());
        if (clean) {
          step = 'stopped';
          log.info('shut down cleanly');
        }
        return clean;
      })());
    const shutdownProgress = () => ({ step, nats_in_flight: service.inFlight });

    return { config, db, nc, dispatcher, http, relay, sink, scheduler, sessions, lobbies, metrics, httpUrl, stop, shutdownProgress };
  } catch (err) {
    for (const c of cleanup) await c().catch(() => undefined);
    throw err;
  }
}
