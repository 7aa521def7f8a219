/**
 * Runs the service in-process against real NATS and a fresh PostgreSQL database, with its own
 * subject prefix and stream, and gives tests a Gateway-like client: requests with headers,
 * a recorder of broadcasts (core subscription) and a reader of the JetStream stream.
 */
import { connect } from '@nats-io/transport-node';
import { headers as natsHeaders, type ConnectionOptions, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  Header,
  allBroadcastsFilter,
  type Envelope,
  type ErrorBody,
  type EventName,
  type ReplyOf,
  type RequestOf,
  type Subject,
} from '../../subjects/index.js';
import { startApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger, type Logger } from '../../src/log.js';
import { createDatabase, natsUrl, uniqueId, waitFor, type TestDatabase } from './infra.js';

export interface TestEnv {
  prefix: string;
  stream: string;
  databaseUrl: string;
  /** The environment the service was started with (reuse it to restart it). */
  env: Record<string, string>;
}

/** A fresh database, subject prefix and stream name for one test file. */
export async function createTestEnv(extra: Record<string, string> = {}): Promise<TestEnv & { db: TestDatabase }> {
  const db = await createDatabase();
  const id = uniqueId('t');
  const prefix = `${id}.`;
  const stream = `LOBBY_${id.toUpperCase()}`;
  const env = {
    NATS_URL: natsUrl(),
    NATS_SUBJECT_PREFIX: prefix,
    NATS_STREAM: stream,
    DATABASE_URL: db.url,
    HTTP_PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    // Tests drive many requests per device quickly; abuse limits get their own tests.
    RATE_LIMIT_PER_SECOND: '10000',
    RATE_LIMIT_BURST: '10000',
    ...extra,
  };
  return { prefix, stream, databaseUrl: db.url, env, db };
}

/** `log`: a logger of the test's own (e.g. one that records the lines). */
export async function startService(env: Record<string, string>, log?: Logger): Promise<App> {
  const config = loadConfig(env);
  return startApp(config, log ?? createLogger(config.logLevel));
}

export interface Reply<T> {
  ok: boolean;
  data: T;
  error?: ErrorBody['error'];
  /** `Nats-Service-Error-Code` as a number, when an error. */
  status?: number;
  headers: Msg['headers'];
}

export interface SendOptions {
  idempotencyKey?: string;
  requestId?: string;
  /** Raw body instead of JSON of `data`. */
  raw?: Uint8Array | string;
  /** Omit the Device-Id header. */
  noDevice?: boolean;
  /** More headers (e.g. `traceparent`). */
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** A Gateway-like NATS client for one test environment. */
export class GatewayClient {
  readonly broadcasts: Envelope[] = [];
  private sub?: Subscription;

  private constructor(
    readonly nc: NatsConnection,
    readonly prefix: string,
    readonly stream: string,
  ) {}

  /** `auth`: credentials (e.g. `{user, pass}`) for a server with users. */
  static async connect(
    env: Pick<TestEnv, 'prefix' | 'stream'>,
    url: string | string[] = natsUrl(),
    auth: Partial<ConnectionOptions> = {},
  ): Promise<GatewayClient> {
    const nc = await connect({ servers: url, noAsyncTraces: true, maxReconnectAttempts: -1, reconnectTimeWait: 200, ...auth });
    const c = new GatewayClient(nc, env.prefix, env.stream);
    // Records every broadcast as a Gateway subscribed to `lobby.*.>` would.
    c.sub = nc.subscribe(allBroadcastsFilter(env.prefix), {
      callback: (_e, m) => {
        c.broadcasts.push(m.json<Envelope>());
      },
    });
    await nc.flush();
    return c;
  }

  async send<S extends Subject>(
    subject: S,
    device: string,
    data: RequestOf<S> | Record<string, unknown> = {},
    opts: SendOptions = {},
  ): Promise<Reply<ReplyOf<S>>> {
    const h = natsHeaders();
    if (!opts.noDevice) h.set(Header.deviceId, device);
    if (opts.idempotencyKey) h.set(Header.idempotencyKey, opts.idempotencyKey);
    if (opts.requestId) h.set(Header.requestId, opts.requestId);
    for (const [k, v] of Object.entries(opts.headers ?? {})) h.set(k, v);
    const body = opts.raw ?? JSON.stringify(data);
    const msg = await this.nc.request(`${this.prefix}${subject}`, body, { headers: h, timeout: opts.timeoutMs ?? 10_000 });
    const code = msg.headers?.has(Header.serviceErrorCode) ? Number(msg.headers.get(Header.serviceErrorCode)) : undefined;
    if (code !== undefined) {
      const body = msg.json<ErrorBody>();
      return { ok: false, data: undefined as never, error: body.error, status: code, headers: msg.headers };
    }
    return { ok: true, data: msg.json<ReplyOf<S>>(), headers: msg.headers };
  }

  /** Sends and expects success; throws with the error otherwise. */
  async call<S extends Subject>(subject: S, device: string, data: RequestOf<S> | Record<string, unknown> = {}, opts?: SendOptions) {
    const r = await this.send(subject, device, data, opts);
    if (!r.ok) throw new Error(`${subject} failed: ${r.status} ${JSON.stringify(r.error)}`);
    return r.data;
  }

  /** Broadcasts of one lobby (optionally of one event), in arrival order. */
  of(lobbyId: string, event?: EventName): Envelope[] {
    return this.broadcasts.filter((b) => b.lobby_id === lobbyId && (!event || b.event === event));
  }

  /** Waits until the lobby has at least `n` broadcasts matching `event`. */
  async waitFor(lobbyId: string, event: EventName, n = 1): Promise<Envelope[]> {
    return waitFor(() => (this.of(lobbyId, event).length >= n ? this.of(lobbyId, event) : undefined), {
      message: `waiting for ${n} x ${event} in lobby ${lobbyId}`,
    });
  }

  /** Every message of the stream, in stream order (bodies parsed). */
  async streamMessages(filterLobby?: string): Promise<Array<{ subject: string; seq: number; msgId: string; body: Envelope }>> {
    const jsm = await jetstreamManager(this.nc);
    const info = await jsm.streams.info(this.stream);
    const out = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(this.stream, { seq });
      if (!m) continue;
      const body = m.json<Envelope>();
      if (filterLobby && body.lobby_id !== filterLobby) continue;
      out.push({ subject: m.subject, seq: m.seq, msgId: m.header?.get(Header.msgId) ?? '', body });
    }
    return out;
  }

  async close(): Promise<void> {
    this.sub?.unsubscribe();
    await this.nc.close();
  }
}

/** Starts a service and a client for one test file; `stop()` tears everything down. */
export async function startHarness(extra: Record<string, string> = {}) {
  const env = await createTestEnv(extra);
  const app = await startService(env.env);
  const client = await GatewayClient.connect(env);
  return {
    env,
    app,
    client,
    async stop() {
      await client.close().catch(() => undefined);
      await app.stop().catch(() => undefined);
      await deleteStream(env).catch(() => undefined);
      await env.db.drop();
    },
  };
}

/** Removes a test stream (streams outlive the test process otherwise). */
export async function deleteStream(env: Pick<TestEnv, 'stream'>, url = natsUrl()): Promise<void> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(env.stream).catch(() => undefined);
    // The join guard's bucket (src/transport/join-failures.ts) is named after the stream.
    await jsm.streams.delete(`KV_${env.stream}_JOIN_FAILURES`).catch(() => undefined);
  } finally {
    await nc.close();
  }
}

export const device = (name: string) => `${name}-${uniqueId('d')}`;
