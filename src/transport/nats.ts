/**
 * NATS transport: the connection, and the `lobby` micro service (every command subject in
 * queue group `lobby`, plus `$SRV.PING/INFO/STATS` so that `nats micro ls` finds it).
 *
 * `$SRV.INFO` lists, per endpoint, the JSON Schemas of its request and reply as JSON text in
 * `metadata.request_schema` / `metadata.response_schema` (the micro protocol's metadata is a map
 * of strings), so a client can discover the contract from a running service.
 *
 * Implemented over core subscriptions (the published @nats-io/services is a stale prerelease
 * that does not await async handlers). Every request gets a reply: a success body, or an
 * error with `Nats-Service-Error-Code` / `Nats-Service-Error` headers.
 */
import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectCoalescing } from './nats-socket.js';
import {
  AuthorizationError,
  UserAuthenticationExpiredError,
  credsAuthenticator,
  headers as natsHeaders,
  Match,
  nuid,
  type Msg,
  type Subscription,
} from '@nats-io/nats-core';
import type { Logger } from 'pino';
import { Header, SERVICE, commands, subjectNames, type Subject, ErrorCode } from '../../subjects/index.js';
import type { Config } from '../config.js';
import { standaloneSchema } from '../docs/schemas.js';
import { ServiceError, toWire } from '../errors.js';
import { Outage } from '../outage.js';
import type { Dispatcher } from './dispatch.js';

/** Whether each connection currently has a server (tracked from its status events). */
const linkUp = new WeakMap<NatsConnection, boolean>();

/** True while `nc` is connected (false while it reconnects, and once closed). */
export function natsConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && (linkUp.get(nc) ?? false);
}

/** Thrown when NATS refuses the configured credentials; its message names no secret. */
export class NatsAuthError extends Error {
  override readonly name = 'NatsAuthError';
}

/** The authentication options of `config` (one method at most: config.ts enforces it); the operator CLIs use them too. */
export function authOptions(config: Config['nats']) {
  if (config.credsFile) return { authenticator: credsAuthenticator(readFileSync(config.credsFile)) };
  if (config.token !== undefined) return { token: config.token };
  if (config.user !== undefined) return { user: config.user, pass: config.password };
  return {};
}

/** Which credential kind is in use, for log lines (never the credential itself). */
export function authMethod(config: Config['nats']): 'creds' | 'token' | 'user' | 'none' {
  return config.credsFile ? 'creds' : config.token !== undefined ? 'token' : config.user !== undefined ? 'user' : 'none';
}

export async function connectNats(config: Config['nats'], log: Logger, name = 'lobby-service'): Promise<NatsConnection> {
  let nc: NatsConnection;
  try {
    nc = await connectCoalescing({
      servers: config.servers,
      name,
      // Keep trying forever: the default gives up after ~20 s, and a NATS outage must only delay.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      // Start-up waits for NATS to come up instead of failing (the caller logs that it waits).
      // Refused credentials still fail at once (the client gives up on a repeated auth error).
      waitOnFirstConnect: true,
      noAsyncTraces: true,
      ...authOptions(config),
    });
  } catch (err) {
    if (err instanceof AuthorizationError || err instanceof UserAuthenticationExpiredError) {
      throw new NatsAuthError(
        `NATS refused the credentials (${authMethod(config)}): ${err.message}; check NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS`,
      );
    }
    throw err;
  }
  linkUp.set(nc, true);
  // One line when the link drops, a reminder while it stays down, one (with outage_ms) when back.
  const outage = new Outage(log, 'nats', {
    down: 'NATS connection lost; reconnecting',
    still: 'NATS still disconnected; reconnecting',
    back: 'NATS reconnected',
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        linkUp.set(nc, false);
        outage.begin();
      } else if (s.type === 'reconnect') {
        linkUp.set(nc, true);
        outage.end({ server: nc.getServer() });
      } else if (s.type === 'error') {
        // Server-reported (a permissions violation, an auth error on reconnect): the message is
        // the whole story, a client stack adds nothing. It never carries a credential.
        const error = (s as { error?: unknown }).error;
        log.error({ error: error instanceof Error ? error.message : String(error) }, 'NATS error');
      }
    }
    outage.stop();
  })();
  return nc;
}

interface EndpointStats {
  name: string;
  subject: string;
  queue_group: string;
  num_requests: number;
  num_errors: number;
  last_error: string;
  processing_time: number;
  average_processing_time: number;
}

const encoder = new TextEncoder();
const PKG_VERSION = '0.1.0';

/** Endpoint metadata of `$SRV.INFO`: strings only, so the schemas travel as JSON text. */
export interface EndpointMetadata {
  description: string;
  /** JSON Schema (draft-07) of the request body, as JSON text. */
  request_schema: string;
  /** JSON Schema (draft-07) of the success reply, as JSON text. */
  response_schema: string;
  [key: string]: string;
}

const metadataCache = new Map<Subject, EndpointMetadata>();

/** The INFO metadata of one command (computed once per process). */
export function endpointMetadata(subject: Subject): EndpointMetadata {
  let m = metadataCache.get(subject);
  if (!m) {
    const { request, reply, description } = commands[subject];
    m = {
      description,
      request_schema: JSON.stringify(standaloneSchema(request, 'input')),
      response_schema: JSON.stringify(standaloneSchema(reply, 'output')),
    };
    metadataCache.set(subject, m);
  }
  return m;
}

/** Endpoint names may not contain dots: `lobby.create` -> `lobby_create`. */
const endpointName = (s: string) => s.replace(/\./g, '_');

export class NatsService {
  readonly id = nuid.next();
  private readonly started = new Date().toISOString();
  private readonly subs: Subscription[] = [];
  private readonly stats = new Map<Subject, EndpointStats>();
  private readonly requests = new Set<Promise<void>>();
  private stopping = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly dispatcher: Dispatcher,
    private readonly log: Logger,
    private readonly prefix: string,
  ) {}

  start(): void {
    for (const subject of subjectNames) {
      if (!this.dispatcher.serves(subject)) continue;
      const wire = `${this.prefix}${subject}`;
      this.stats.set(subject, {
        name: endpointName(subject),
        subject: wire,
        queue_group: SERVICE.queue,
        num_requests: 0,
        num_errors: 0,
        last_error: '',
        processing_time: 0,
        average_processing_time: 0,
      });
      this.subs.push(
        this.nc.subscribe(wire, {
          queue: SERVICE.queue,
          callback: (err, msg) => {
            if (err) return this.log.error({ err, subject: wire }, 'subscription failed');
            this.track(this.serve(subject, msg));
          },
        }),
      );
    }
    for (const verb of ['PING', 'INFO', 'STATS'] as const) {
      for (const subj of [`$SRV.${verb}`, `$SRV.${verb}.${SERVICE.name}`, `$SRV.${verb}.${SERVICE.name}.${this.id}`]) {
        this.subs.push(
          this.nc.subscribe(subj, {
            callback: (_e, msg) => {
              msg.respond(encoder.encode(JSON.stringify(this.control(verb))));
            },
          }),
        );
      }
    }
    this.log.info({ micro_service: SERVICE.name, id: this.id, endpoints: this.stats.size }, 'NATS micro service started');
  }

  /** Requests being served right now. */
  get inFlight(): number {
    return this.requests.size;
  }

  private track(p: Promise<void>): void {
    this.requests.add(p);
    void p.finally(() => this.requests.delete(p));
  }

  private async serve(subject: Subject, msg: Msg): Promise<void> {
    const t0 = performance.now();
    const h = msg.headers;
    const get = (name: string) => (h?.has(name) ? h.get(name) : undefined);
    const requestId = get(Header.requestId);
    const outcome = await this.dispatcher.dispatch({
      subject,
      body: msg.data,
      deviceId: get(Header.deviceId),
      requestId,
      connectionId: get(Header.connectionId),
      idempotencyKey: get(Header.idempotencyKey),
      // Go clients canonicalize header names (`Traceparent`): match any case.
      traceparent: h?.values(Header.traceparent, Match.IgnoreCase)[0],
    });
    const st = this.stats.get(subject)!;
    st.num_requests++;
    // The micro spec's times are nanoseconds.
    st.processing_time += Math.round((performance.now() - t0) * 1e6);
    st.average_processing_time = Math.round(st.processing_time / st.num_requests);
    // `num_errors` is the micro spec's "errors returned": every error reply, refusals included.
    if (!outcome.ok) {
      st.num_errors++;
      st.last_error = `${outcome.error.code}: ${outcome.error.message}`;
    }
    if (!msg.reply) return;
    const hdrs = natsHeaders();
    if (requestId) hdrs.set(Header.requestId, requestId);
    try {
      if (outcome.ok) {
        msg.respond(encoder.encode(JSON.stringify(outcome.reply)), { headers: hdrs });
      } else {
        const wire = toWire(outcome.error);
        hdrs.set(Header.serviceErrorCode, String(wire.status));
        // Header values may not contain line breaks (a message can quote user input).
        hdrs.set(Header.serviceError, outcome.error.message.replace(/[\r\n]+/g, ' '));
        msg.respond(encoder.encode(JSON.stringify(wire.body)), { headers: hdrs });
      }
    } catch (err) {
      // E.g. a reply over the server's max_payload: answer `internal` instead of a silent timeout.
      this.log.error({ err, subject }, 'could not send the reply');
      if (outcome.ok) st.num_errors++;
      st.last_error = 'internal: could not send the reply';
      try {
        const fallback = toWire(new ServiceError(ErrorCode.internal, 'internal error'));
        const eh = natsHeaders();
        if (requestId) eh.set(Header.requestId, requestId);
        eh.set(Header.serviceErrorCode, String(fallback.status));
        eh.set(Header.serviceError, fallback.body.error.message);
        msg.respond(encoder.encode(JSON.stringify(fallback.body)), { headers: eh });
      } catch (again) {
        this.log.error({ err: again, subject }, 'could not send the fallback reply');
      }
    }
  }

  private control(verb: 'PING' | 'INFO' | 'STATS'): object {
    const identity = { name: SERVICE.name, id: this.id, version: PKG_VERSION, metadata: {} };
    if (verb === 'PING') return { type: 'io.nats.micro.v1.ping_response', ...identity };
    const endpoints = [...this.stats.values()];
    if (verb === 'INFO') {
      return {
        type: 'io.nats.micro.v1.info_response',
        ...identity,
        description: SERVICE.description,
        endpoints: endpoints.map((e) => ({
          name: e.name,
          subject: e.subject,
          queue_group: e.queue_group,
          metadata: endpointMetadata(e.subject.slice(this.prefix.length) as Subject),
        })),
      };
    }
    return {
      type: 'io.nats.micro.v1.stats_response',
      ...identity,
      started: this.started,
      endpoints: endpoints.map((e) => ({ ...e, data: null })),
    };
  }

  /**
   * Stops taking requests, then waits for the ones in flight (so each still gets its reply).
   * The connection itself is drained by the caller afterwards.
   */
  async stop(timeoutMs: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await Promise.allSettled(this.subs.map((s) => s.drain()));
    const all = Promise.allSettled([...this.requests]);
    const timedOut = await Promise.race([all.then(() => false), delay(timeoutMs).then(() => true)]);
    if (timedOut) this.log.warn({ in_flight: this.requests.size }, 'shutdown: gave up waiting for requests in flight');
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
