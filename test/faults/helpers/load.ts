/**
 * Steady concurrent traffic for fault tests, over NATS and over the HTTP shim
 * (`POST /gateway/handle`), recording every reply by its code.
 *
 * Callers behave like the app behind a Gateway that retries a 503: every write carries an
 * Idempotency-Key and is sent again with the same key after `unavailable` (or no reply), so a
 * write that committed just before the database died is answered from its stored reply, and
 * every reply the service gives is either a success or `unavailable`. Anything else is counted
 * (and kept, for the test's message).
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, Header, type Subject } from '../../../subjects/index.js';
import { cycleSteps, setupLobby, type LobbySetup } from '../../helpers/measurement.js';
import { device, type GatewayClient } from '../../helpers/service.js';

export type Transport = 'nats' | 'http';

export interface ReplyRecord {
  /** Date.now() when the reply (or the timeout) came. */
  at: number;
  transport: Transport;
  subject: Subject;
  /** `ok`, an error code, or `timeout` (no reply in time). */
  code: string;
  write: boolean;
}

export interface LoadOptions {
  /** Lobby churn callers over NATS (join, get, leave). */
  natsLobbies: number;
  /** Session callers over NATS (create_session, the steps of one speaker, status). */
  natsSessions: number;
  /** Lobby churn callers over HTTP (`/gateway/handle`). */
  httpLobbies: number;
  /** Pause between a caller's requests (0: back to back). */
  pauseMs?: number;
  /** Pause before sending a write again after `unavailable`. */
  retryMs?: number;
  /** NATS request / HTTP timeout. */
  timeoutMs?: number;
}

/** Long deadlines: an outage must not fail a phase (that would be a correct `wrong_phase`). */
const TIMEOUTS = { ready_ms: 600_000, audio_ms: 600_000, recording_start_ms: 600_000, playback_ms: 600_000, upload_ms: 600_000 };

export class Load {
  readonly replies: ReplyRecord[] = [];
  /** Replies that were neither a success nor `unavailable`, with their message. */
  readonly unexpected: Array<ReplyRecord & { message?: string }> = [];
  private running = false;
  private callers: Array<Promise<void>> = [];

  constructor(
    private readonly client: GatewayClient,
    private readonly httpUrl: string,
    private readonly opts: LoadOptions,
  ) {}

  /** Creates every caller's lobby (the database must be up), then starts them all. */
  async start(): Promise<void> {
    const { natsLobbies, natsSessions, httpLobbies } = this.opts;
    const lobbies = await Promise.all(
      Array.from({ length: natsLobbies + httpLobbies }, () => this.client.call('lobby.create', device('admin'), {})),
    );
    const sessions: LobbySetup[] = [];
    for (let i = 0; i < natsSessions; i++) sessions.push(await setupLobby(this.client, { speakers: 1, microphones: 1 }));
    this.running = true;
    lobbies.forEach((l, i) => this.callers.push(this.lobbyCaller(i < natsLobbies ? 'nats' : 'http', l)));
    for (const L of sessions) this.callers.push(this.sessionCaller(L));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.callers);
  }

  /** Replies by code. */
  counts(since = 0): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.replies) if (r.at >= since) out[r.code] = (out[r.code] ?? 0) + 1;
    return out;
  }

  /** Time of the first successful write answered at or after `t`. */
  firstWriteSuccessAfter(t: number): number | undefined {
    return this.replies.find((r) => r.at >= t && r.write && r.code === 'ok')?.at;
  }

  // ------------------------------------------------------------------ callers

  private async lobbyCaller(transport: Transport, lobby: { lobby_id: string; code: string }): Promise<void> {
    while (this.running) {
      const guest = device('guest');
      await this.write(transport, 'lobby.join', guest, { code: lobby.code });
      await this.read(transport, 'lobby.get', guest, { lobby_id: lobby.lobby_id });
      await this.write(transport, 'lobby.leave', guest, { lobby_id: lobby.lobby_id });
    }
  }

  private async sessionCaller(L: LobbySetup): Promise<void> {
    while (this.running) {
      const created = await this.write<{ session_id: string }>('nats', 'measurement.create_session', L.admin, {
        job_id: `job-${randomUUID().slice(0, 8)}`,
        lobby_id: L.lobbyId,
        speakers: L.speakers,
        microphones: L.microphones,
        timeouts: TIMEOUTS,
        auto_advance: false,
      });
      if (!created) continue;
      const sid = created.session_id;
      let broken = false;
      for (const group of cycleSteps(L, sid, 0)) {
        for (const call of group) if (!broken && !(await this.write('nats', call.subject, call.device, call.data))) broken = true;
      }
      await this.read('nats', 'measurement.session_status', L.admin, { session_id: sid });
      // A step refused for a reason of its own (counted as unexpected): end the session, go on.
      if (broken) await this.write('nats', 'measurement.cancel_session', L.admin, { session_id: sid });
    }
  }

  /** A write, sent again with the same key until it is answered with something else than `unavailable`. */
  private async write<T>(transport: Transport, subject: Subject, dev: string, data: Record<string, unknown>): Promise<T | undefined> {
    const key = randomUUID();
    for (;;) {
      const r = await this.once(transport, subject, dev, data, key);
      if (r.code === 'ok') return r.body as T;
      if ((r.code !== ErrorCode.unavailable && r.code !== 'timeout') || !this.running) return undefined;
      await sleep(this.opts.retryMs ?? 100);
    }
  }

  /** A read: one try. */
  private async read(transport: Transport, subject: Subject, dev: string, data: Record<string, unknown>): Promise<void> {
    await this.once(transport, subject, dev, data);
    if (this.opts.pauseMs) await sleep(this.opts.pauseMs);
  }

  private async once(
    transport: Transport,
    subject: Subject,
    dev: string,
    data: Record<string, unknown>,
    key?: string,
  ): Promise<{ code: string; body?: unknown }> {
    let result: { code: string; body?: unknown; message?: string };
    try {
      result = transport === 'nats' ? await this.viaNats(subject, dev, data, key) : await this.viaHttp(subject, dev, data, key);
    } catch (err) {
      const name = (err as Error).name;
      result = { code: name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : `exception:${name}`, message: String(err) };
    }
    const rec: ReplyRecord = { at: Date.now(), transport, subject, code: result.code, write: key !== undefined };
    this.replies.push(rec);
    if (result.code !== 'ok' && result.code !== ErrorCode.unavailable) this.unexpected.push({ ...rec, message: result.message });
    if (this.opts.pauseMs && key) await sleep(this.opts.pauseMs);
    return result;
  }

  private async viaNats(subject: Subject, dev: string, data: Record<string, unknown>, key?: string) {
    const r = await this.client.send(subject, dev, data, { idempotencyKey: key, timeoutMs: this.opts.timeoutMs ?? 15_000 });
    return r.ok ? { code: 'ok', body: r.data } : { code: r.error!.code, message: r.error!.message };
  }

  private async viaHttp(subject: Subject, dev: string, data: Record<string, unknown>, key?: string) {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (key) headers[Header.idempotencyKey] = key;
    const res = await fetch(`${this.httpUrl}/gateway/handle`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ client: { device_id: dev, connection_id: `conn-${dev}` }, message: { event: subject, data } }),
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 15_000),
    });
    const body = (await res.json()) as { error?: { code: string; message: string } };
    if (res.ok) return { code: 'ok', body };
    return { code: body.error?.code ?? `http_${res.status}`, message: body.error?.message };
  }
}
