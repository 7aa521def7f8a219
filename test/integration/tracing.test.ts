/**
 * W3C trace context across the service: a request's `traceparent` (NATS header or HTTP header)
 * becomes its log lines' `trace_id` / `span_id`, and every broadcast it causes carries the
 * request's span as `traceparent`: on a core subscription, in the stream's stored headers and
 * on the v1 sink's POST. Requests without one (or with a malformed one) start a trace; so does
 * a deadline that fires. Log lines of a command name its lobby even when it named only a code
 * or a session.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/nats-core';
import { Header, allBroadcastsFilter, broadcastSubject, type Envelope, type EventName } from '../../subjects/index.js';
import type { App } from '../../src/app.js';
import { waitFor } from '../helpers/infra.js';
import { createSession, setupLobby } from '../helpers/measurement.js';
import { RecordingSink, recordingLogger } from '../helpers/observe.js';
import { GatewayClient, createTestEnv, deleteStream, device, startService, type TestEnv } from '../helpers/service.js';

let env: Awaited<ReturnType<typeof createTestEnv>>;
let app: App;
let client: GatewayClient;
let sink: RecordingSink;
let lines: Array<Record<string, unknown>>;
/** Broadcasts as a core subscriber sees them, with their headers. */
const seen: Array<{ body: Envelope; traceparent?: string }> = [];
let sub: Subscription;

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

beforeAll(async () => {
  sink = await RecordingSink.start();
  env = await createTestEnv({ GATEWAY_URL: sink.url });
  const recorder = recordingLogger('info');
  lines = recorder.lines;
  app = await startService(env.env, recorder.log);
  client = await GatewayClient.connect(env);
  sub = client.nc.subscribe(allBroadcastsFilter(env.prefix), {
    callback: (_e, m) => {
      seen.push({ body: m.json<Envelope>(), traceparent: m.headers?.get(Header.traceparent) || undefined });
    },
  });
  await client.nc.flush();
});

afterAll(async () => {
  sub?.unsubscribe();
  await client?.close();
  await app?.stop();
  await sink?.close();
  await deleteStream(env as TestEnv).catch(() => undefined);
  await env?.db.drop();
});

/** The dispatcher's one line for the request `requestId` (served or refused). */
const requestLine = (requestId: string) =>
  waitFor(() => lines.find((l) => l.request_id === requestId && String(l.msg).startsWith('request ')), {
    message: `log line of ${requestId}`,
  });

/**
 * The `traceparent` of every copy of the lobby's first `n` `event` broadcasts, once delivered
 * everywhere: the core subscriber's headers, the sink POSTs' headers, then the stream's stored
 * headers of the last one.
 */
async function broadcastTraces(lobbyId: string, event: EventName, n = 1): Promise<string[]> {
  const core = await waitFor(() => {
    const got = seen.filter((s) => s.body.lobby_id === lobbyId && s.body.event === event);
    return got.length >= n ? got : undefined;
  });
  const posted = await waitFor(() => {
    const got = sink.received.filter(
      (r) => r.body.event === event && String(r.headers['x-event-id']).startsWith(`${lobbyId}:`),
    );
    return got.length >= n ? got : undefined;
  });
  // The stream's newest message of that subject is the last of them.
  const jsm = await jetstreamManager(client.nc);
  const stored = await jsm.streams.getMessage(env.stream, { last_by_subj: broadcastSubject(lobbyId, event, env.prefix) });
  expect(stored!.json<Envelope>().id).toBe(core.at(-1)!.body.id);
  return [...core.map((c) => c.traceparent ?? ''), ...posted.map((p) => String(p.headers.traceparent)), stored!.header?.get(Header.traceparent) ?? ''];
}

describe('tracing - traceparent from a request to its broadcasts', () => {
  it('tracing - over NATS: the log line and every copy of the broadcast carry the request span', async () => {
    const lobby = await client.call('lobby.create', device('admin'), {});
    const traceId = hex(16);
    const parent = hex(8);
    const requestId = `nats-${hex(4)}`;
    await client.call('lobby.join', device('guest'), { code: lobby.code }, { requestId, headers: { traceparent: `00-${traceId}-${parent}-01` } });

    const line = await requestLine(requestId);
    expect(line.trace_id).toBe(traceId);
    expect(line.span_id).toMatch(/^[0-9a-f]{16}$/);
    // A child span: the request's own id, not the caller's.
    expect(line.span_id).not.toBe(parent);
    // Joined by code: the line names the lobby all the same.
    expect(line.lobby_id).toBe(lobby.lobby_id);

    const traces = await broadcastTraces(lobby.lobby_id, 'lobby.updated', 2);
    // The create's broadcast has a trace of its own; the join's is the request's span, everywhere.
    expect(traces.filter((t) => t === `00-${traceId}-${line.span_id}-01`)).toHaveLength(3);
    expect(traces.every((t) => TRACEPARENT.test(t))).toBe(true);
  });

  it('tracing - over HTTP (/gateway/handle): the same, and the sampled flag is kept', async () => {
    const lobby = await client.call('lobby.create', device('admin'), {});
    const traceId = hex(16);
    const requestId = `http-${hex(4)}`;
    const res = await fetch(`${app.httpUrl}/gateway/handle`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${hex(8)}-00` },
      body: JSON.stringify({
        client: { device_id: device('guest'), connection_id: 'c1' },
        message: { event: 'lobby.join', request_id: requestId, data: { code: lobby.code } },
      }),
    });
    expect(res.status).toBe(200);
    const line = await requestLine(requestId);
    expect(line.trace_id).toBe(traceId);
    const traces = await broadcastTraces(lobby.lobby_id, 'lobby.updated', 2);
    expect(traces.filter((t) => t === `00-${traceId}-${line.span_id}-00`)).toHaveLength(3);
  });

  it('tracing - a Go-style "Traceparent" header name is read too', async () => {
    const traceId = hex(16);
    const requestId = `go-${hex(4)}`;
    await client.call('lobby.create', device('admin'), {}, { requestId, headers: { Traceparent: `00-${traceId}-${hex(8)}-01` } });
    expect((await requestLine(requestId)).trace_id).toBe(traceId);
  });

  it('tracing - without a traceparent, or with a malformed one, a request starts a new trace', async () => {
    const bad = `00-${'0'.repeat(32)}-${hex(8)}-01`;
    const variants: Array<Record<string, string>> = [{}, { traceparent: bad }, { traceparent: 'nonsense' }];
    for (const headers of variants) {
      const requestId = `new-${hex(4)}`;
      const lobby = await client.call('lobby.create', device('admin'), {}, { requestId, headers });
      const line = await requestLine(requestId);
      expect(line.trace_id).toMatch(/^[0-9a-f]{32}$/);
      expect(line.trace_id).not.toBe('0'.repeat(32));
      const [traceparent] = await broadcastTraces(lobby.lobby_id, 'lobby.updated');
      expect(traceparent).toBe(`00-${line.trace_id}-${line.span_id}-01`);
    }
  });

  it('tracing - a session step names its lobby in its log line; a fired deadline is a trace of its own', async () => {
    const L = await setupLobby(client, { speakers: 1, microphones: 1 });
    const S = await createSession(client, L, { timeouts: { ready_ms: 150 } });
    const requestId = `step-${hex(4)}`;
    await client.call('measurement.start_speaker', L.admin, { session_id: S }, { requestId });
    const line = await requestLine(requestId);
    expect(line).toMatchObject({ session_id: S, lobby_id: L.lobbyId, device_id: L.admin });

    // Nobody says ready: the deadline fires, logged with its session, lobby and trace.
    const fired = await waitFor(() => lines.find((l) => l.msg === 'session deadline fired' && l.session_id === S));
    expect(fired).toMatchObject({ lobby_id: L.lobbyId, fired: 'timeout', component: 'deadlines' });
    const [traceparent] = await broadcastTraces(L.lobbyId, 'measurement.error');
    expect(traceparent).toBe(`00-${fired.trace_id}-${fired.span_id}-01`);
  });
});
