/**
 * The JetStream side of the outbox: the `LOBBY_EVENTS` stream (created or updated at
 * start-up) and the destination that publishes event rows into it.
 */
import { nanos, type NatsConnection } from '@nats-io/nats-core';
import {
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { Logger } from 'pino';
import {
  allBroadcastsFilter,
  broadcastMsgId,
  broadcastSubject,
  type Envelope,
  type EventName,
} from '../../subjects/index.js';
import type { Config } from '../config.js';
import type { LobbyEventRow } from '../db/entities.js';
import { natsConnected } from '../transport/nats.js';
import { PartialDelivery, type Destination } from './relay.js';

/** JetStream de-duplicates a `Nats-Msg-Id` seen within this window. */
export const DUPLICATE_WINDOW_MS = 2 * 60_000;
/** Rows older than this may have been published before a crash, beyond the window's reach. */
const VERIFY_AFTER_MS = 60_000;
/** A local JetStream acks in milliseconds; a publish lost in a disconnect should not stall long. */
const PUBLISH_TIMEOUT_MS = 3_000;
const encoder = new TextEncoder();

/** Creates the stream, or brings an existing one to the configured subjects and limits. */
export async function ensureStream(nc: NatsConnection, config: Config['nats'], log: Logger): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  const wanted = {
    subjects: [allBroadcastsFilter(config.subjectPrefix)],
    max_age: nanos(config.eventsMaxAgeMs),
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
  };
  try {
    const info = await jsm.streams.info(config.stream);
    const c = info.config;
    if (
      c.subjects?.join() !== wanted.subjects.join() ||
      c.max_age !== wanted.max_age ||
      c.duplicate_window !== wanted.duplicate_window
    ) {
      await jsm.streams.update(config.stream, { ...c, ...wanted });
      log.info({ stream: config.stream, ...wanted }, 'JetStream stream updated');
    }
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
    await jsm.streams.add({
      name: config.stream,
      ...wanted,
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: 1,
    });
    log.info({ stream: config.stream, ...wanted }, 'JetStream stream created');
  }
  return jsm;
}

/** The broadcast body (CONTRACT section 5) of an event row. */
export function envelopeOf(row: LobbyEventRow): Envelope {
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
 * Publishes rows to `lobby.<lobby_id>.<event>` with `Nats-Msg-Id: <lobby_id>:<id>`, waiting for
 * each ack before the next (per lobby), so the stream holds a lobby's events in id order.
 */
export function jetStreamDestination(
  nc: NatsConnection,
  jsm: JetStreamManager,
  config: Config['nats'],
  log: Logger,
): Destination {
  const js = jetstream(nc, { timeout: PUBLISH_TIMEOUT_MS });
  const prefix = config.subjectPrefix;

  /**
   * Whether a row was already stored by an earlier publish whose ack we never saw (a crash
   * between publish and mark), beyond the duplicate window: the newest message on the same
   * subject carries an id at least this one's. Events of a lobby are published in id order,
   * so that can only be this event or a later one.
   */
  async function alreadyStored(row: LobbyEventRow): Promise<boolean> {
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
    column: 'publishedAt',
    async deliver(rows) {
      // While disconnected a publish would only wait for its timeout; the relay retries as soon
      // as the connection is back.
      if (!natsConnected(nc)) throw new PartialDelivery(0, new Error('NATS is disconnected'));
      let i = 0;
      try {
        for (; i < rows.length; i++) {
          const row = rows[i]!;
          if (Date.now() - row.createdAt.getTime() > VERIFY_AFTER_MS && (await alreadyStored(row))) {
            log.info({ lobby_id: row.lobbyId, id: row.id }, 'event already in the stream (published before a restart); not republished');
            continue;
          }
          // `msgID` is sent as the `Nats-Msg-Id` header.
          const ack = await js.publish(
            broadcastSubject(row.lobbyId, row.type as EventName, prefix),
            encoder.encode(JSON.stringify(envelopeOf(row))),
            { msgID: broadcastMsgId(row.lobbyId, row.id), timeout: PUBLISH_TIMEOUT_MS },
          );
          if (ack.duplicate) {
            log.info({ lobby_id: row.lobbyId, id: row.id }, 'event was already in the stream (published before a restart); deduplicated');
          }
        }
        return i;
      } catch (err) {
        throw new PartialDelivery(i, err);
      }
    },
  };
}
