/**
 * The JetStream side of the outbox: the `LOBBY_EVENTS` stream (created or updated at
 * start-up) and the destination that publishes event rows into it.
 */
import { headers as natsHeaders, nanos, type NatsConnection } from '@nats-io/nats-core';
import {
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import type { Logger } from 'pino';
import {
  Header,
  allBroadcastsFilter,
  broadcastMsgId,
  broadcastSubject,
  type Envelope,
  type EventName,
} from '../../subjects/index.js';
import type { Config } from '../config.js';
import type { EventRow } from './event-row.js';
import { natsConnected } from '../transport/nats.js';
import type { Destination } from './relay.js';

/** JetStream de-duplicates a `Nats-Msg-Id` seen within this window. */
export const DUPLICATE_WINDOW_MS = 2 * 60_000;
/** Rows older than this may have been published before a crash, beyond the window's reach. */
const VERIFY_AFTER_MS = 60_000;
/** A local JetStream acks in milliseconds; a publish lost in a disconnect should not stall long. */
const PUBLISH_TIMEOUT_MS = 3_000;
const encoder = new TextEncoder();

/** JetStream's refusal of `num_replicas` > 1 on a server that is not clustered. */
const REPLICAS_NOT_SUPPORTED = 10074;

/**
 * The replicas a stream can have here: `wanted`, or 1 with a warning on a single server (which
 * refuses more on create and, worse, accepts them on update without replicating anything).
 */
export function effectiveReplicas(nc: NatsConnection, wanted: number, log: Logger, stream: string): number {
  if (wanted > 1 && !nc.info?.cluster) {
    log.warn(
      { stream, wanted_replicas: wanted, replicas: 1 },
      'NATS_STREAM_REPLICAS > 1 needs a NATS cluster with JetStream; this server is not clustered, keeping 1 replica',
    );
    return 1;
  }
  return wanted;
}

/**
 * Creates stream `name`, or brings an existing one to the settings in `wanted` (compared field
 * by field) and to `replicas`; `onCreate` holds settings JetStream cannot change later (storage).
 * Shared by the event stream and the join-failure bucket.
 */
export async function ensureStreamConfig(
  jsm: JetStreamManager,
  wanted: Partial<StreamConfig> & { name: string },
  onCreate: Partial<StreamConfig>,
  replicas: number,
  log: Logger,
): Promise<void> {
  const { name } = wanted;
  const differs = (c: StreamConfig) =>
    c.num_replicas !== replicas ||
    Object.entries(wanted).some(([k, v]) => JSON.stringify(c[k as keyof StreamConfig]) !== JSON.stringify(v));
  try {
    const info = await jsm.streams.info(name);
    if (differs(info.config)) {
      // num_replicas changes in place on a clustered JetStream (scale up or down).
      await jsm.streams.update(name, { ...info.config, ...wanted, num_replicas: replicas });
      log.info({ stream: name, replicas, was_replicas: info.config.num_replicas }, 'JetStream stream updated');
    }
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
    try {
      await jsm.streams.add({ ...onCreate, ...wanted, num_replicas: replicas });
    } catch (again) {
      if (!(again instanceof JetStreamApiError) || again.code !== REPLICAS_NOT_SUPPORTED || replicas === 1) throw again;
      log.warn({ stream: name, wanted_replicas: replicas, replicas: 1 }, 'JetStream refused replicas > 1 (not clustered); keeping 1 replica');
      await jsm.streams.add({ ...onCreate, ...wanted, num_replicas: 1 });
    }
    log.info({ stream: name, replicas }, 'JetStream stream created');
  }
}

/** Creates the stream, or brings an existing one to the configured subjects, limits and replicas. */
export async function ensureStream(nc: NatsConnection, config: Config['nats'], log: Logger): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  await ensureStreamConfig(
    jsm,
    {
      name: config.stream,
      subjects: [allBroadcastsFilter(config.subjectPrefix)],
      max_age: nanos(config.eventsMaxAgeMs),
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    },
    { storage: StorageType.File, retention: RetentionPolicy.Limits, discard: DiscardPolicy.Old },
    effectiveReplicas(nc, config.streamReplicas, log, config.stream),
    log,
  );
  return jsm;
}

/** The broadcast body (CONTRACT section 5) of an event row. */
export function envelopeOf(row: EventRow): Envelope {
  return {
    id: row.id,
    event: row.type as EventName,
    lobby_id: row.lobbyId,
    session_id: row.sessionId ?? null,
    data: row.payload,
    targets: { device_ids: row.targets },
    created_at: row.createdAt.toISOString(),
  };
}

/**
 * Publishes a row to `lobby.<lobby_id>.<event>` with `Nats-Msg-Id: <lobby_id>:<id>` and resolves
 * on its ack; the relay publishes a lobby's next row only after that, so the stream holds a
 * lobby's events in id order.
 */
export function jetStreamDestination(
  nc: NatsConnection,
  jsm: JetStreamManager,
  config: Config['nats'],
  log: Logger,
  /** Called when the stream has a new leader: a good moment to retry at once. */
  onNewLeader: () => void = () => undefined,
): Destination {
  const js = jetstream(nc, { timeout: PUBLISH_TIMEOUT_MS });
  const prefix = config.subjectPrefix;
  const untilAckPossible = abortWhenAckLost(nc, streamLeaderElected(config.stream), () => {
    log.info({ stream: config.stream }, 'JetStream stream has a new leader; publishing resumes');
    onNewLeader();
  });

  /**
   * Whether a row was already stored by an earlier publish whose ack we never saw (a crash
   * between publish and mark), beyond the duplicate window: the newest message on the same
   * subject carries an id at least this one's. Events of a lobby are published in id order,
   * so that can only be this event or a later one.
   */
  async function alreadyStored(row: EventRow): Promise<boolean> {
    const subject = broadcastSubject(row.lobbyId, row.type as EventName, prefix);
    const last = await jsm.streams.getMessage(config.stream, { last_by_subj: subject }).catch((err) => {
      if (err instanceof JetStreamApiError && err.status === 404) return null;
      throw err;
    });
    if (!last) return false;
    const body = last.json<{ id?: number }>();
    return typeof body.id === 'number' && body.id >= row.id;
  }

  return {
    name: `jetstream:${config.stream}`,
    column: 'published_at',
    async deliver(row) {
      // While disconnected a publish would only wait for its timeout; the relay retries as soon
      // as the connection is back.
      if (!natsConnected(nc)) throw new NatsDisconnected();
      if (Date.now() - row.createdAt.getTime() > VERIFY_AFTER_MS && (await alreadyStored(row))) {
        log.info({ lobby_id: row.lobbyId, id: row.id }, 'event already in the stream (published before a restart); not republished');
        return;
      }
      // `msgID` is sent as the `Nats-Msg-Id` header; the trace context of the cause beside it.
      const headers = row.traceparent === null ? undefined : natsHeaders();
      if (row.traceparent !== null) headers!.set(Header.traceparent, row.traceparent);
      const ack = await untilAckPossible(
        js.publish(
          broadcastSubject(row.lobbyId, row.type as EventName, prefix),
          encoder.encode(JSON.stringify(envelopeOf(row))),
          { msgID: broadcastMsgId(row.lobbyId, row.id), timeout: PUBLISH_TIMEOUT_MS, headers },
        ),
      );
      if (ack.duplicate) {
        log.info({ lobby_id: row.lobbyId, id: row.id }, 'event was already in the stream (published before a restart); deduplicated');
      }
    },
  };
}

/** JetStream's advisory that a stream (e.g. after its leader's node died) has a new leader. */
export const streamLeaderElected = (stream: string) => `$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.${stream}`;

/** A publish not even tried: NATS is disconnected (an expected failure, retried on reconnect). */
export class NatsDisconnected extends Error {
  override readonly name = 'NatsDisconnected';
  constructor() {
    super('NATS is disconnected');
  }
}

/** The error a publish in flight fails with when its ack can no longer come. */
export class PublishInterrupted extends Error {
  override readonly name = 'PublishInterrupted';
  constructor(why: string) {
    super(`${why} while the publish waited for its ack; retried at once`);
  }
}

/**
 * Wraps promises so that they reject at once when their ack can no longer come: the client
 * disconnected (its server died), or the stream elected a new leader (the old one, which was
 * to ack, is gone). Such a publish would otherwise wait out its whole timeout; failing it now
 * lets the relay retry the moment the client has reconnected (`retryNow`) or the new leader
 * is in place (`onNewLeader`), and the `Nats-Msg-Id` makes the retry harmless if the first
 * attempt was stored after all.
 */
function abortWhenAckLost(nc: NatsConnection, leaderAdvisory: string, onNewLeader: () => void): <T>(p: Promise<T>) => Promise<T> {
  const waiting = new Set<(err: Error) => void>();
  const abortAll = (why: string) => {
    for (const reject of waiting) reject(new PublishInterrupted(why));
    waiting.clear();
  };
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'disconnect') abortAll('NATS disconnected');
  })();
  nc.subscribe(leaderAdvisory, {
    callback: () => {
      abortAll('the stream elected a new leader');
      onNewLeader();
    },
  });
  return <T>(p: Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      waiting.add(reject);
      // The abandoned publish still settles later (its timeout): handled here, never unhandled.
      p.then(resolve, reject).finally(() => waiting.delete(reject));
    });
}
