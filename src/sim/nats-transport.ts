/**
 * Phones over NATS, with this transport playing the Gateway: requests carry the `Device-Id`
 * header (and a `Request-Id` like the app's), and ONE core subscription on `lobby.*.>` routes
 * each broadcast envelope to the phones its `targets.device_ids` name, dropping an envelope id
 * already seen for that lobby (CONTRACT section 5: a core subscriber may get an event twice).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  RequestError,
  TimeoutError,
  credsAuthenticator,
  headers as natsHeaders,
  type Msg,
  type Subscription,
} from '@nats-io/nats-core';
import {
  Header,
  SERVICE,
  Subject,
  allBroadcastsFilter,
  type Envelope,
  type ErrorBody,
} from '../../subjects/index.js';
import type { CountingTransport, PushHandler, RequestResult, TransportCounters } from './transport.js';

export interface NatsTransportOptions {
  /** NATS servers (default `nats://127.0.0.1:4222`). */
  servers?: string[];
  /** Subject prefix of the service (`NATS_SUBJECT_PREFIX`), e.g. `staging.`; '' for none. */
  prefix?: string;
  token?: string;
  user?: string;
  password?: string;
  /** Path of a `.creds` file. */
  credsFile?: string;
  /** How long a request waits for its reply (default 10 s). */
  requestTimeoutMs?: number;
  name?: string;
}

/** Connection options from the environment, as the service reads them (CONTRACT section 7). */
export function natsOptionsFromEnv(env: Record<string, string | undefined> = process.env): NatsTransportOptions {
  const prefix = env.NATS_SUBJECT_PREFIX?.trim() ?? '';
  return {
    servers: env.NATS_URL ? env.NATS_URL.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
    prefix: normalizePrefix(prefix),
    token: env.NATS_TOKEN || undefined,
    user: env.NATS_USER || undefined,
    password: env.NATS_PASSWORD || undefined,
    credsFile: env.NATS_CREDS || undefined,
  };
}

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** `staging` -> `staging.`; '' stays ''. */
export function normalizePrefix(prefix: string): string {
  return prefix === '' || prefix.endsWith('.') ? prefix : `${prefix}.`;
}

/** `Request-Id` as the app makes it: decimal microseconds since the epoch (kept unique here). */
let lastMicros = 0;
function appRequestId(): string {
  lastMicros = Math.max(lastMicros + 1, Math.floor((performance.timeOrigin + performance.now()) * 1000));
  return String(lastMicros);
}

export class NatsPhoneTransport implements CountingTransport {
  readonly counters: TransportCounters = { requests: 0, errors: 0, broadcasts: 0, duplicateBroadcasts: 0 };
  private readonly phones = new Map<string, PushHandler>();
  /** Envelope ids seen, per lobby. */
  private readonly seen = new Map<string, Set<number>>();
  private readonly sub: Subscription;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private ownsConnection = false;
  /** Why the broadcast subscription ended, if it did. */
  subscriptionError?: Error;
  /** Phone handlers that threw (a bug in a phone; the other phones still got the broadcast). */
  handlerErrors: unknown[] = [];

  constructor(
    readonly nc: NatsConnection,
    opts: Pick<NatsTransportOptions, 'prefix' | 'requestTimeoutMs'> = {},
  ) {
    this.prefix = normalizePrefix(opts.prefix ?? '');
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.sub = nc.subscribe(allBroadcastsFilter(this.prefix), {
      callback: (err, msg) => {
        // A subscription error (e.g. a permission violation) ends it: keep it for the report.
        if (err) this.subscriptionError = err;
        else this.route(msg);
      },
    });
  }

  /** Connects (retrying reconnects forever) and subscribes to the broadcasts. */
  static async connect(opts: NatsTransportOptions = {}): Promise<NatsPhoneTransport> {
    const nc = await connect({
      servers: opts.servers ?? [DEFAULT_NATS_URL],
      name: opts.name ?? 'lobby-simulator',
      maxReconnectAttempts: -1,
      noAsyncTraces: true,
      token: opts.token,
      user: opts.user,
      pass: opts.password,
      authenticator: opts.credsFile ? credsAuthenticator(readFileSync(opts.credsFile)) : undefined,
    });
    const t = new NatsPhoneTransport(nc, opts);
    t.ownsConnection = true;
    await nc.flush();
    return t;
  }

  async request(deviceId: string, subject: Subject, data: Record<string, unknown>): Promise<RequestResult> {
    this.counters.requests++;
    const h = natsHeaders();
    h.set(Header.deviceId, deviceId);
    // The app's request ids are microsecond timestamps, except for room snapshots (a UUID).
    h.set(Header.requestId, subject === Subject['lobby.room_snapshot'] ? randomUUID() : appRequestId());
    let msg: Msg;
    try {
      msg = await this.nc.request(`${this.prefix}${subject}`, JSON.stringify(data), { headers: h, timeout: this.timeoutMs });
    } catch (err) {
      this.counters.errors++;
      return { ok: false, status: 0, error: lostRequest(err) };
    }
    const status = msg.headers?.get(Header.serviceErrorCode);
    if (status) {
      this.counters.errors++;
      const body = safeJson(msg) as ErrorBody | undefined;
      const message = msg.headers?.get(Header.serviceError) ?? '';
      return { ok: false, status: Number(status), error: body?.error ?? { code: 'unknown', message } };
    }
    return { ok: true, data: safeJson(msg) };
  }

  attach(deviceId: string, handler: PushHandler): () => void {
    this.phones.set(deviceId, handler);
    return () => {
      if (this.phones.get(deviceId) === handler) this.phones.delete(deviceId);
    };
  }

  /** Whether a `lobby` micro service answers `$SRV.PING.lobby` (never prefixed). */
  async ping(timeoutMs = 2000): Promise<boolean> {
    try {
      await this.nc.request(`$SRV.PING.${SERVICE.name}`, '', { timeout: timeoutMs });
      return true;
    } catch {
      return false;
    }
  }

  /** Whether something serves the command subjects under this transport's prefix. */
  async servesPrefix(timeoutMs = 2000): Promise<boolean> {
    const r = await this.probe(timeoutMs);
    return !(r.ok === false && r.error.code === 'no_responders');
  }

  private probe(timeoutMs: number): Promise<RequestResult> {
    return this.nc
      .request(`${this.prefix}${Subject['lobby.get']}`, JSON.stringify({ code: '' }), {
        headers: (() => {
          const h = natsHeaders();
          h.set(Header.deviceId, `simulator-probe-${randomUUID()}`);
          return h;
        })(),
        timeout: timeoutMs,
      })
      .then((): RequestResult => ({ ok: true, data: null }))
      .catch((err): RequestResult => ({ ok: false, status: 0, error: lostRequest(err) }));
  }

  async close(): Promise<void> {
    this.sub.unsubscribe();
    if (this.ownsConnection) await this.nc.close();
  }

  private route(msg: Msg): void {
    this.counters.broadcasts++;
    const env = safeJson(msg) as Envelope | undefined;
    if (!env || typeof env.id !== 'number' || !env.targets || !Array.isArray(env.targets.device_ids)) return;
    let ids = this.seen.get(env.lobby_id);
    if (!ids) this.seen.set(env.lobby_id, (ids = new Set()));
    if (ids.has(env.id)) {
      this.counters.duplicateBroadcasts++;
      return;
    }
    ids.add(env.id);
    for (const id of env.targets.device_ids) {
      const handler = this.phones.get(id);
      if (!handler) continue;
      try {
        handler(env.event, env.data);
      } catch (err) {
        // A phone's bug must not keep the others from getting the broadcast.
        this.handlerErrors.push(err);
      }
    }
  }
}

function safeJson(msg: Msg): unknown {
  try {
    return msg.json();
  } catch {
    return undefined;
  }
}

function lostRequest(err: unknown): { code: string; message: string } {
  if (err instanceof RequestError && err.isNoResponders()) return { code: 'no_responders', message: 'no service answers' };
  if (err instanceof TimeoutError || (err instanceof RequestError && err.cause instanceof TimeoutError)) {
    return { code: 'timeout', message: 'no reply in time' };
  }
  return { code: 'transport_error', message: err instanceof Error ? err.message : String(err) };
}
