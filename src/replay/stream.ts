/**
 * The JetStream side of `npm run replay`: a lobby's history read back from the stream, and the
 * stream rebuilt from the database event log (the log is the source of truth, CONTRACT section 5).
 */
import { headers as natsHeaders, RequestError, type NatsConnection } from '@nats-io/nats-core';
import { JetStreamApiError, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { broadcastMsgId, broadcastSubject, Header, lobbyBroadcastFilter, Subject, type Envelope, type EventName } from '../../subjects/index.js';
import type { Config } from '../config.js';
import { EVENT_COLUMNS, eventRowOf, type EventRecord } from '../outbox/event-row.js';
import { ensureStream, envelopeOf } from '../outbox/jetstream.js';
import { OutboxStore, type SqlRunner } from '../outbox/store.js';

/** Something the operator must fix first; the message says what (no stack). */
export class ReplayRefusal extends Error {}

/** Whether stream `name` exists; its message count when it does. */
async function streamMessages(nc: NatsConnection, name: string): Promise<number | null> {
  const jsm = await jetstreamManager(nc);
  try {
    return (await jsm.streams.info(name)).state.messages;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.status === 404) return null;
    throw err;
  }
}

/**
 * A lobby's broadcasts still held by the stream, oldest first, from envelope id `fromId` on: an
 * ordered consumer (ephemeral, no acks) filtered on `lobby.<id>.>`, read until it has caught up.
 * Earlier ids are delivered and skipped (a lobby's history is short).
 */
export async function* lobbyHistory(
  nc: NatsConnection,
  opts: { stream: string; prefix: string; lobbyId: string; fromId?: number },
): AsyncGenerator<Envelope> {
  if ((await streamMessages(nc, opts.stream)) === null) throw new ReplayRefusal(`stream ${opts.stream} not found (is NATS_STREAM right?)`);
  const consumer = await jetstream(nc).consumers.get(opts.stream, { filter_subjects: lobbyBroadcastFilter(opts.lobbyId, opts.prefix) });
  if ((await consumer.info(true)).num_pending === 0) return;
  const messages = await consumer.consume();
  try {
    for await (const m of messages) {
      const envelope = m.json<Envelope>();
      if (envelope.id >= (opts.fromId ?? 0)) yield envelope;
      if (m.info.pending === 0) break;
    }
  } finally {
    await messages.close();
  }
}

/** A page of the event log in id order (primary key), each row saying whether it was ever marked published. */
const LOG_PAGE = `
  select ${EVENT_COLUMNS}, e.published_at is null as unpublished from lobby_events e
  where e.id > $1 and e.created_at >= $2::timestamptz order by e.id limit $3`;
/** Rows left out because the stream would no longer hold them. */
const TOO_OLD = `select count(*)::int as n from lobby_events where created_at < $1::timestamptz`;

export interface RebuildOptions {
  nc: NatsConnection;
  sql: SqlRunner;
  /** The service's NATS settings: stream name and settings, subject prefix, `EVENTS_MAX_AGE`. */
  nats: Config['nats'];
  log: Logger;
  /** Also rows older than `EVENTS_MAX_AGE` (by default left out: the stream would have dropped them). */
  all?: boolean;
  /** Publishes in flight at once (one page of the log). */
  window?: number;
  /** Called after each page with the rows published so far. */
  onProgress?: (published: number) => void;
}

export interface RebuildResult {
  /** Rows published (stored by the stream). */
  published: number;
  /** Rows the stream reported as duplicates (its duplicate window already had them). */
  duplicates: number;
  lobbies: number;
  /** Rows that had never been marked published, marked now. */
  marked: number;
  /** Rows older than `EVENTS_MAX_AGE`, left out. */
  skipped: number;
  ms: number;
}

/** Whether a lobby service answers commands under `prefix` (its relay would publish into the stream meanwhile). */
async function serviceAnswers(nc: NatsConnection, prefix: string): Promise<boolean> {
  const h = natsHeaders();
  h.set(Header.deviceId, 'replay-rebuild-probe');
  try {
    await nc.request(`${prefix}${Subject['lobby.get']}`, JSON.stringify({ code: '' }), { headers: h, timeout: 2_000 });
    return true;
  } catch (err) {
    if (err instanceof RequestError && err.isNoResponders()) return false;
    throw err;
  }
}

/**
 * Republishes the event log into an empty (or absent, then created like the service does)
 * stream: every row in id order, so each lobby's events are in id order, with the relay's
 * subject, body and `Nats-Msg-Id`; marks rows never marked published. Refuses while a service
 * serves the prefix (its relay would interleave new events) or when the stream holds messages.
 * A page of publishes is in flight at once: NATS keeps them in order on the one connection.
 */
export async function rebuildStream(o: RebuildOptions): Promise<RebuildResult> {
  const started = performance.now();
  const { nats } = o;
  if (await serviceAnswers(o.nc, nats.subjectPrefix)) {
    throw new ReplayRefusal(
      `a lobby service answers on prefix "${nats.subjectPrefix}": stop every replica first (its relay would publish new events in between), then run this again`,
    );
  }
  const held = await streamMessages(o.nc, nats.stream);
  if (held !== null && held > 0) {
    throw new ReplayRefusal(`stream ${nats.stream} holds ${held} messages; a rebuild only fills an empty stream (delete or purge it first)`);
  }
  await ensureStream(o.nc, nats, o.log);

  const js = jetstream(o.nc, { timeout: 10_000 });
  const marks = new OutboxStore(o.sql, 'published_at');
  const cutoff = new Date(o.all ? 0 : Date.now() - nats.eventsMaxAgeMs).toISOString();
  const window = o.window ?? 256;
  const lobbies = new Set<string>();
  const result: RebuildResult = { published: 0, duplicates: 0, lobbies: 0, marked: 0, skipped: 0, ms: 0 };
  for (let after = 0; ; ) {
    const page = await o.sql.query<EventRecord & { unpublished: boolean }>(LOG_PAGE, [after, cutoff, window]);
    if (page.length === 0) break;
    const rows = page.map(eventRowOf);
    try {
      const acks = await Promise.all(
        rows.map((row) =>
          js.publish(broadcastSubject(row.lobbyId, row.type as EventName, nats.subjectPrefix), JSON.stringify(envelopeOf(row)), {
            msgID: broadcastMsgId(row.lobbyId, row.id),
          }),
        ),
      );
      for (const ack of acks) {
        if (ack.duplicate) result.duplicates++;
        else result.published++;
      }
    } catch (err) {
      throw new ReplayRefusal(
        `publishing failed after ${result.published} events (${err instanceof Error ? err.message : String(err)}); ` +
          `the stream is incomplete: delete it and run the rebuild again`,
      );
    }
    const unmarked = rows.filter((_, i) => page[i]!.unpublished).map((r) => r.id);
    if (unmarked.length) await marks.mark(unmarked);
    result.marked += unmarked.length;
    for (const r of rows) lobbies.add(r.lobbyId);
    after = rows.at(-1)!.id;
    o.onProgress?.(result.published + result.duplicates);
  }
  result.lobbies = lobbies.size;
  if (!o.all) result.skipped = Number((await o.sql.query<{ n: number }>(TOO_OLD, [cutoff]))[0]?.n ?? 0);
  result.ms = Math.round(performance.now() - started);
  return result;
}
