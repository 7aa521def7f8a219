/**
 * Composition root: config -> database -> NATS -> handlers -> endpoints -> relays -> HTTP,
 * and the orderly shutdown in reverse. `main.ts` runs it as a process; tests run it in-process.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { InternalSubject } from '../subjects/index.js';
import type { Config } from './config.js';
import { Database } from './db/orm.js';
import { createHttpServer } from './http/server.js';
import { createLobbyHandlers } from './lobby/handlers.js';
import { createMeasurementHandlers } from './measurement/handlers.js';
import { DeadlineScheduler } from './measurement/scheduler.js';
import { Sessions } from './measurement/sessions.js';
import { ensureStream, jetStreamDestination } from './outbox/jetstream.js';
import { OutboxRelay } from './outbox/relay.js';
import { gatewaySinkDestination } from './outbox/sink.js';
import { UnitOfWork } from './outbox/unit-of-work.js';
import { Dispatcher, type HandlerTable } from './transport/dispatch.js';
import { IdempotencyStore } from './transport/idempotency.js';
import { JoinGuard, TokenBuckets } from './transport/limits.js';
import { NatsService, connectNats, natsConnected } from './transport/nats.js';

export interface App {
  config: Config;
  db: Database;
  nc: NatsConnection;
  dispatcher: Dispatcher;
  http: FastifyInstance;
  relay: OutboxRelay;
  scheduler: DeadlineScheduler;
  sessions: Sessions;
  /** `http://host:port` the shim listens on. */
  httpUrl: string;
  /** Graceful stop: no new requests, finish in-flight ones, flush the outbox, drain, close. */
  stop(): Promise<void>;
}

const IDEMPOTENCY_PURGE_MS = 10 * 60_000;

export async function startApp(config: Config, log: Logger): Promise<App> {
  const started = performance.now();
  const db = await Database.open(config.database, log);
  const cleanup: Array<() => Promise<unknown>> = [() => db.close()];
  try {
    const waiting = setTimeout(
      () => log.warn({ servers: config.nats.servers }, 'still waiting for NATS (is nats-server running?)'),
      3_000,
    );
    const nc = await connectNats(config.nats, log).finally(() => clearTimeout(waiting));
    cleanup.unshift(() => nc.close());
    const jsm = await ensureStream(nc, config.nats, log);

    const holder = `${process.pid}-${crypto.randomUUID()}`;
    const kickSubject = `${config.nats.subjectPrefix}${InternalSubject.outboxKick}`;
    let relay!: OutboxRelay;
    // The v1 Gateway sink (GATEWAY_URL): a second destination of the same outbox, own lease.
    const sink = config.gatewayUrl
      ? new OutboxRelay(
          db,
          gatewaySinkDestination({ gatewayUrl: config.gatewayUrl, token: config.gatewayToken }),
          log.child({ component: 'sink' }),
          { holder, onStandbyNotify: () => nc.publish(kickSubject) },
        )
      : undefined;
    const uow = new UnitOfWork(
      db,
      () => {
        relay.notify();
        sink?.notify();
      },
      { sinkEnabled: sink !== undefined },
    );
    relay = new OutboxRelay(db, jetStreamDestination(nc, jsm, config.nats, log.child({ component: 'relay' })), log.child({ component: 'relay' }), {
      holder,
      onStandbyNotify: () => nc.publish(kickSubject),
    });
    // Back from a NATS outage: publish the backlog now rather than at the end of a back-off.
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'reconnect') relay.retryNow();
    })();
    // Another replica wrote events while this one holds the lease: deliver them now.
    const kickSub = nc.subscribe(kickSubject, {
      callback: () => {
        relay.kick();
        sink?.kick();
      },
    });

    const sessions = new Sessions(db, uow, config);
    const scheduler = new DeadlineScheduler(sessions, log.child({ component: 'deadlines' }));
    const handlers: HandlerTable = {
      ...createLobbyHandlers({ db, uow, config, sessions, joinGuard: new JoinGuard(config.limits.joinFailuresPerMinute) }),
      ...createMeasurementHandlers({ uow, config, sessions }),
    };
    const idempotency = new IdempotencyStore(db);
    const dispatcher = new Dispatcher({
      handlers,
      log,
      limits: new TokenBuckets(config.limits.ratePerSecond, config.limits.rateBurst),
      idempotency,
    });
    const service = new NatsService(nc, dispatcher, log.child({ component: 'nats' }), config.nats.subjectPrefix);

    const http = await createHttpServer({
      config,
      log,
      dispatcher,
      health: async () => ({ database: await db.ping(), nats: natsConnected(nc) }),
    });
    await http.listen({ host: config.http.host, port: config.http.port });
    const address = http.server.address();
    const port = typeof address === 'object' && address ? address.port : config.http.port;
    const httpUrl = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${port}`;

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
        .catch((err) => log.warn({ err }, 'idempotency purge failed'));
    }, IDEMPOTENCY_PURGE_MS);
    purge.unref();

    log.info(
      {
        startup_ms: Math.round(performance.now() - started),
        http: httpUrl,
        nats: config.nats.servers,
        stream: config.nats.stream,
        database: config.database.kind === 'postgresql' ? 'postgresql' : `embedded (${config.database.dir ?? 'memory'})`,
      },
      'lobby service ready',
    );

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        log.info('shutting down: no new requests');
        clearInterval(purge);
        await http.close().catch((err) => log.warn({ err }, 'HTTP close failed'));
        await service.stop(config.shutdownTimeoutMs);
        await scheduler.stop();
        await sessions.mailboxes.idle();
        await Promise.all([relay.stop(config.shutdownTimeoutMs), sink?.stop(config.shutdownTimeoutMs)]);
        kickSub.unsubscribe();
        await nc.drain().catch((err) => log.warn({ err }, 'NATS drain failed'));
        await db.close();
        log.info('shut down cleanly');
      })());

    return { config, db, nc, dispatcher, http, relay, scheduler, sessions, httpUrl, stop };
  } catch (err) {
    for (const c of cleanup) await c().catch(() => undefined);
    throw err;
  }
}
