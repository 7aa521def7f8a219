/**
 * Assertions shared by the lobby integration tests: a broadcast tap that keeps each message's
 * subject and `Nats-Msg-Id`, the check that a lobby's broadcasts, its event log and its
 * JetStream messages agree, and small builders for lobbies with guests.
 */
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { jetstreamManager, type JetStreamManager, type StoredMsg } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect } from 'vitest';
import {
  Envelope,
  ErrorStatus,
  Header,
  Lobby,
  allBroadcastsFilter,
  broadcastMsgId,
  broadcastSubject,
  events,
  lobbyBroadcastFilter,
  type ErrorCode,
  type EventName,
  type LobbyUpdateType,
} from '../../subjects/index.js';
import type { App } from '../../src/app.js';
import { waitFor } from './infra.js';
import type { GatewayClient, Reply } from './service.js';
import { device, startHarness } from './service.js';

export type Harness = Awaited<ReturnType<typeof startHarness>>;

/** Starts a harness and a tap for the test file (beforeAll), hands them over, stops both (afterAll). */
export function withTappedHarness(use: (started: { h: Harness; tap: Tap }) => void, extraEnv?: Record<string, string>): void {
  let started: { h: Harness; tap: Tap } | undefined;
  beforeAll(async () => {
    const h = await startHarness(extraEnv);
    started = { h, tap: await Tap.open(h.client) };
    use(started);
  });
  afterAll(async () => {
    started?.tap.close();
    await started?.h.stop();
  });
}

export interface Captured {
  subject: string;
  msgId: string | undefined;
  body: Envelope;
}

/** Records every broadcast of one environment as the Gateway receives it (core subscription). */
export class Tap {
  readonly all: Captured[] = [];
  private sub?: Subscription;
  private constructor(
    readonly nc: NatsConnection,
    readonly prefix: string,
    readonly stream: string,
  ) {}

  static async open(client: GatewayClient): Promise<Tap> {
    const tap = new Tap(client.nc, client.prefix, client.stream);
    tap.sub = client.nc.subscribe(allBroadcastsFilter(client.prefix), {
      callback: (_e, m) => {
        tap.all.push({ subject: m.subject, msgId: m.headers?.get(Header.msgId) || undefined, body: m.json<Envelope>() });
      },
    });
    await client.nc.flush();
    return tap;
  }

  of(lobbyId: string, event?: EventName): Captured[] {
    return this.all.filter((c) => c.body.lobby_id === lobbyId && (!event || c.body.event === event));
  }

  /** `lobby.updated` broadcasts of a lobby, optionally of one `type`. */
  updates(lobbyId: string, type?: LobbyUpdateType): Captured[] {
    return this.of(lobbyId, 'lobby.updated').filter((c) => !type || c.body.data.type === type);
  }

  close(): void {
    this.sub?.unsubscribe();
  }
}

/** Ids of the lobby's rows in the event log (the source of truth), in id order. */
export async function loggedIds(app: App, lobbyId: string): Promise<number[]> {
  const rows = await app.db.read((em) =>
    em.execute<Array<{ id: string | number }>>('select id from lobby_events where lobby_id = ? order by id', [lobbyId]),
  );
  return rows.map((r) => Number(r.id));
}

/** Messages of one lobby in the stream, in stream order (reads only that lobby's subjects). */
export async function lobbyStream(nc: NatsConnection, stream: string, prefix: string, lobbyId: string) {
  const jsm: JetStreamManager = await jetstreamManager(nc);
  const filter = lobbyBroadcastFilter(lobbyId, prefix);
  const out: Captured[] = [];
  for (let seq = 1; ; ) {
    // `next_by_subj` (server 2.9+): the first message on or after `seq` matching the filter.
    const m: StoredMsg | null = await jsm.streams.getMessage(stream, { seq, next_by_subj: filter } as never);
    if (!m) return out;
    out.push({ subject: m.subject, msgId: m.header?.get(Header.msgId) || undefined, body: m.json<Envelope>() });
    seq = m.seq + 1;
  }
}

/**
 * Waits until every logged event of the lobby has been received and stored in the stream,
 * then checks the contract's invariants for all of them:
 * - the tap received exactly the logged ids, each once, in id order (strictly increasing);
 * - subject `<prefix>lobby.<lobby_id>.<event>` and `Nats-Msg-Id: <lobby_id>:<id>`;
 * - the envelope and its `data` match the contract's schemas (strict: no extra fields), and
 *   `lobby.updated` carries `type`, `lobby_id` and the whole lobby;
 * - the stream holds the same messages, each exactly once, in the same order.
 * Returns the lobby's broadcasts.
 */
export async function settle(tap: Tap, app: App, lobbyId: string): Promise<Envelope[]> {
  const ids = await loggedIds(app, lobbyId);
  const last = ids.at(-1);
  if (last !== undefined) {
    await waitFor(() => tap.of(lobbyId).some((c) => c.body.id === last), {
      message: `broadcast ${last} of lobby ${lobbyId} not received`,
    });
  }
  const got = tap.of(lobbyId);
  expect(got.map((c) => c.body.id)).toEqual(ids);
  for (const c of got) {
    const b = c.body;
    expect(c.subject).toBe(broadcastSubject(lobbyId, b.event, tap.prefix));
    expect(c.msgId).toBe(broadcastMsgId(lobbyId, b.id));
    expect(Envelope.safeParse(b).error).toBeUndefined();
    expect(events[b.event].safeParse(b.data).error, `${b.event} ${JSON.stringify(b.data)}`).toBeUndefined();
    expect(new Date(b.created_at).toISOString()).toBe(b.created_at);
    if (b.event.startsWith('lobby.')) expect(b.session_id).toBeNull();
    if (b.event === 'lobby.updated') {
      expect(b.data.lobby_id).toBe(lobbyId);
      expect((b.data.lobby as Lobby).lobby_id).toBe(lobbyId);
    }
    expect(new Set(b.targets.device_ids).size).toBe(b.targets.device_ids.length);
  }
  const stored = await waitFor(
    async () => {
      const s = await lobbyStream(tap.nc, tap.stream, tap.prefix, lobbyId);
      return s.length >= ids.length ? s : undefined;
    },
    { message: `stream does not hold the ${ids.length} events of lobby ${lobbyId}` },
  );
  expect(stored).toEqual(got);
  return got.map((c) => c.body);
}

/** Targets as a set: exactly these devices, in any order. */
export function expectTargets(b: { targets: { device_ids: string[] } }, devices: string[]): void {
  expect([...b.targets.device_ids].sort()).toEqual([...devices].sort());
}

/** An error reply with the contract's code, status header, message header and body. */
export function expectError<T>(r: Reply<T>, code: ErrorCode): NonNullable<Reply<T>['error']> {
  expect(r.ok, `expected ${code}, got success ${JSON.stringify(r.data)}`).toBe(false);
  expect(r.error?.code).toBe(code);
  expect(r.status).toBe(ErrorStatus[code]);
  expect(r.headers?.get(Header.serviceErrorCode)).toBe(String(ErrorStatus[code]));
  expect(r.headers?.get(Header.serviceError)).toBe(r.error!.message);
  expect(r.error!.message.length).toBeGreaterThan(0);
  return r.error!;
}

/** A lobby created by a fresh admin, joined by `guests` fresh devices (in that order). */
export async function lobbyWith(client: GatewayClient, guests: number, data: Record<string, unknown> = {}) {
  const admin = device('admin');
  const created = await client.call('lobby.create', admin, data);
  const others: string[] = [];
  for (let i = 0; i < guests; i++) {
    const g = device(`guest${i + 1}`);
    await client.call('lobby.join', g, { code: created.code });
    others.push(g);
  }
  return { admin, guests: others, lobby: created, id: created.lobby_id, code: created.code };
}

/** The lobby as `lobby.get` returns it (validated against the contract). */
export async function getLobby(client: GatewayClient, lobbyId: string): Promise<Lobby> {
  return Lobby.parse(await client.call('lobby.get', device('reader'), { lobby_id: lobbyId }));
}

/**
 * A lobby with a speaker and a microphone and a measurement session listing both (created, not
 * started): the lobby is `measurement_running` until the session finishes.
 */
export async function lobbyWithSession(client: GatewayClient) {
  const l = await lobbyWith(client, 3);
  const [speaker, mic, bystander] = l.guests as [string, string, string];
  await client.call('role.assign', l.admin, { lobby_id: l.id, target_device_id: speaker, role: 'speaker', role_slot_id: 'S1' });
  await client.call('role.assign', l.admin, { lobby_id: l.id, target_device_id: mic, role: 'microphone', role_slot_id: 'M1' });
  const session = await client.call('measurement.create_session', l.admin, {
    job_id: `job-${l.id.slice(0, 8)}`,
    lobby_id: l.id,
    speakers: [{ device_id: speaker, slot_id: 'S1' }],
    microphones: [{ device_id: mic, slot_id: 'M1' }],
  });
  return { ...l, speaker, mic, bystander, sessionId: session.session_id };
}
