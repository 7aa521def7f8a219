/**
 * The HTTP shim over real HTTP, against the in-process service on real NATS and PostgreSQL:
 * the v1 endpoints and their shapes, `/gateway/handle` for lobby and measurement commands,
 * the internal token, errors, the OpenAPI document, and the parity of NATS and HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EventsReply,
  Header,
  HttpErrorBody,
  HttpHeader,
  Lobby,
  MAX_BODY_BYTES,
  V1LobbyCreated,
  httpRoutes,
  type Envelope,
  type ErrorCode,
} from '../../subjects/index.js';
import { waitFor } from '../helpers/infra.js';
import { device, startHarness } from '../helpers/service.js';

type Harness = Awaited<ReturnType<typeof startHarness>>;
const TOKEN = 's3cret-token-for-tests';

let h: Harness;
let locked: Harness;
beforeAll(async () => {
  [h, locked] = await Promise.all([
    startHarness({ PUBLIC_BASE_URL: 'https://api.example.test' }),
    // INTERNAL_AUTH_TOKEN too, as v1 deployments set it: it must not guard anything inbound.
    startHarness({ HTTP_AUTH_TOKEN: TOKEN, INTERNAL_AUTH_TOKEN: 'only-sent-to-the-gateway' }),
  ]);
});
afterAll(async () => {
  await Promise.all([h?.stop(), locked?.stop()]);
});

interface HttpResult {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

interface CallOptions {
  body?: unknown;
  /** Sent as is instead of JSON of `body`. */
  raw?: string | Uint8Array;
  headers?: Record<string, string>;
  base?: string;
}

async function call(method: string, path: string, opts: CallOptions = {}): Promise<HttpResult> {
  const headers: Record<string, string> = { ...opts.headers };
  let body: string | Uint8Array | undefined = opts.raw;
  if (body === undefined && opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${opts.base ?? h.app.httpUrl}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

const post = (path: string, body: unknown, opts: CallOptions = {}) => call('POST', path, { ...opts, body });
const get = (path: string, opts: CallOptions = {}) => call('GET', path, opts);
const handle = (deviceId: string, event: string, data?: unknown, extra: Record<string, unknown> = {}, opts: CallOptions = {}) =>
  post('/gateway/handle', { client: { device_id: deviceId, connection_id: `conn-${deviceId}` }, message: { event, data, ...extra } }, opts);

/** Asserts the contract's HTTP error: status and `{detail, error: {code, message, details?}}`. */
function expectError(r: HttpResult, status: number, code: ErrorCode) {
  expect(r.status, r.text).toBe(status);
  const body = HttpErrorBody.parse(r.body);
  expect(body.error.code).toBe(code);
  expect(body.detail).toBe(body.error.message);
  expect(r.text).not.toMatch(/\n\s+at |stack/);
  return body;
}

async function createLobby(admin: string): Promise<{ lobby_id: string; code: string }> {
  const r = await post('/lobbies', { creator_device_id: admin });
  expect(r.status, r.text).toBe(200);
  return r.body;
}

describe('http shim - v1 endpoints', () => {
  it('http - v1 lobby flow: create, join, get, roles, start, leave with v1 bodies and shapes', async () => {
    const admin = device('admin');
    const guest = device('guest');
    const created = await post('/lobbies', { creator_device_id: admin });
    expect(created.status).toBe(200);
    expect(Object.keys(created.body).sort()).toEqual(['admin_device_id', 'code', 'lobby_id', 'state']);
    expect(V1LobbyCreated.parse(created.body)).toMatchObject({ admin_device_id: admin, state: 'open' });
    const L = created.body.lobby_id as string;

    const joined = await post('/lobbies/join', { code: ` ${created.body.code.toLowerCase()} `, device_id: guest });
    expect(joined.status, joined.text).toBe(200);
    expect(Lobby.parse(joined.body).participants.map((p) => p.device_id)).toEqual([admin, guest]);

    const roles = await post(`/lobbies/${L}/roles`, {
      admin_device_id: admin,
      target_device_id: guest,
      role: 'speaker',
      role_slot_id: 'S1',
      role_slot_label: 'Left',
    });
    expect(roles.status, roles.text).toBe(200);
    expect(roles.body).toEqual({ ok: true });

    const read = await get(`/lobbies/${L}`);
    expect(read.status).toBe(200);
    const lobby = Lobby.parse(read.body);
    expect(lobby.participants[1]).toMatchObject({ device_id: guest, role: 'speaker', role_slot_id: 'S1', role_slot_label: 'Left' });

    const started = await post(`/lobbies/${L}/start`, { admin_device_id: admin });
    expect(started.body).toEqual({ ok: true, state: 'measurement_running' });

    const left = await post(`/lobbies/${L}/leave`, { device_id: guest });
    expect(left.status).toBe(200);
    expect(left.body).toEqual({ ok: true });

    const ups = await h.client.waitFor(L, 'lobby.updated', 5);
    expect(ups.map((u) => u.data.type)).toEqual([
      'lobby_created',
      'participant_joined',
      'role_assigned',
      'measurement_started',
      'participant_left',
    ]);

    const max = await post('/lobbies', { creator_device_id: admin, max_participants: 2 });
    expect((await get(`/lobbies/${max.body.lobby_id}`)).body.max_participants).toBe(2);
  });

  it('http - v1 refusals carry the contract status and body', async () => {
    const admin = device('admin');
    const stranger = device('stranger');
    const { lobby_id: L, code } = await createLobby(admin);

    const missing = expectError(await post('/lobbies', {}), 400, 'invalid_request');
    expect(missing.error.details?.issues).toEqual([expect.objectContaining({ path: 'creator_device_id' })]);
    // Unknown fields are ignored (not stored, not echoed), as v1 did.
    const unknown = await post('/lobbies', { creator_device_id: admin, colour: 'red' });
    expect(unknown.status, unknown.text).toBe(200);
    expect(unknown.text).not.toContain('colour');
    // Range rules are the command's own (checked by the dispatcher, same words as on NATS).
    const range = expectError(await post('/lobbies', { creator_device_id: admin, max_participants: 1 }), 400, 'invalid_request');
    expect(range.error.details?.issues).toEqual([expect.objectContaining({ path: 'max_participants' })]);
    const nats = await h.client.send('lobby.create', admin, { max_participants: 1 });
    expect(nats.error).toEqual(range.error);

    expectError(await post(`/lobbies/${L}/roles`, { admin_device_id: stranger, target_device_id: admin, role: 'speaker' }), 403, 'forbidden');
    expectError(await post(`/lobbies/${L}/start`, { admin_device_id: stranger }), 403, 'forbidden');
    expectError(await post('/lobbies/join', { code: 'ZZZZZZ', device_id: stranger }), 404, 'lobby_not_found');
    expectError(await get(`/lobbies/${crypto.randomUUID()}`), 404, 'lobby_not_found');
    expectError(await get(`/lobbies/not-a-uuid`), 404, 'lobby_not_found');
    const long = expectError(await get(`/lobbies/${'x'.repeat(100)}`), 400, 'invalid_request');
    expect(long.error.details?.issues).toEqual([expect.objectContaining({ path: 'lobby_id' })]);
    await post(`/lobbies/${L}/start`, { admin_device_id: admin });
    const notOpen = expectError(await post('/lobbies/join', { code, device_id: stranger }), 409, 'lobby_not_open');
    expect(notOpen.error.details).toEqual({ state: 'measurement_running' });
  });

  it('http - lobby events: paging with after_id and limit, no member check, bad queries refused', async () => {
    const admin = device('admin');
    const { lobby_id: L, code } = await createLobby(admin);
    for (let i = 0; i < 3; i++) await post('/lobbies/join', { code, device_id: device(`g${i}`) });

    const all = await get(`/lobbies/${L}/events`);
    expect(all.status, all.text).toBe(200);
    const page = EventsReply.parse(all.body);
    expect(page.lobby_id).toBe(L);
    expect(page.events.map((e) => e.payload.type)).toEqual(['lobby_created', 'participant_joined', 'participant_joined', 'participant_joined']);
    const ids = page.events.map((e) => e.id);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    // The same page as a member reads it over NATS.
    expect(await h.client.call('lobby.events', admin, { lobby_id: L })).toEqual(page);

    const first = await get(`/lobbies/${L}/events?limit=2`);
    expect(first.body.events.map((e: { id: number }) => e.id)).toEqual(ids.slice(0, 2));
    const next = await get(`/lobbies/${L}/events?after_id=${ids[1]}&limit=2`);
    expect(next.body.events.map((e: { id: number }) => e.id)).toEqual(ids.slice(2, 4));
    const end = await get(`/lobbies/${L}/events?after_id=${ids[3]}`);
    expect(end.body.events).toEqual([]);

    for (const [query, path] of [
      ['limit=abc', 'limit'],
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['after_id=-1', 'after_id'],
      ['after_id=1.5', 'after_id'],
      ['limit=1&limit=2', 'limit'],
    ] as const) {
      const bad = expectError(await get(`/lobbies/${L}/events?${query}`), 400, 'invalid_request');
      expect(bad.error.details?.issues, query).toEqual([expect.objectContaining({ path })]);
    }
    // An unknown query parameter is ignored like an unknown body field.
    expect((await get(`/lobbies/${L}/events?device_id=x`)).status).toBe(200);
    expectError(await get(`/lobbies/${crypto.randomUUID()}/events`), 404, 'lobby_not_found');
  });

  it('http - Idempotency-Key and request ids pass through as on NATS', async () => {
    const admin = device('admin');
    const key = `k-${crypto.randomUUID()}`;
    const first = await post('/lobbies', { creator_device_id: admin }, { headers: { [Header.idempotencyKey]: key } });
    const again = await post('/lobbies', { creator_device_id: admin }, { headers: { [Header.idempotencyKey]: key } });
    expect(again.body).toEqual(first.body);
    const events = await get(`/lobbies/${first.body.lobby_id}/events`);
    expect(events.body.events).toHaveLength(1);
    // The key is the device's, whatever the transport: NATS replays the first reply too.
    const nats = await h.client.call('lobby.create', admin, { max_participants: undefined }, { idempotencyKey: key });
    expect(nats.lobby_id).toBe(first.body.lobby_id);
    const reused = await post('/lobbies', { creator_device_id: admin, max_participants: 5 }, { headers: { [Header.idempotencyKey]: key } });
    expectError(reused, 400, 'invalid_request');
    expectError(await post('/lobbies', { creator_device_id: admin }, { headers: { [Header.idempotencyKey]: 'k'.repeat(129) } }), 400, 'invalid_request');

    const x = await get(`/lobbies/${first.body.lobby_id}`, { headers: { [HttpHeader.requestId]: 'req-x' } });
    expect(x.headers.get(HttpHeader.requestId)).toBe('req-x');
    expect(x.headers.get(Header.requestId)).toBe('req-x');
    const plain = await post('/lobbies', {}, { headers: { [Header.requestId]: 'req-plain' } });
    expect(plain.status).toBe(400);
    expect(plain.headers.get(Header.requestId)).toBe('req-plain');
    const viaBody = await handle(admin, 'lobby.get', { lobby_id: first.body.lobby_id }, { request_id: 'req-body' });
    expect(viaBody.headers.get(HttpHeader.requestId)).toBe('req-body');
  });

  it('http - malformed, oversized and misrouted requests are answered in the error shape', async () => {
    const admin = device('admin');
    const notJson = expectError(await call('POST', '/lobbies', { raw: '{"creator_device_id": ', headers: { 'content-type': 'application/json' } }), 400, 'invalid_request');
    expect(notJson.detail).toBe('request body is not JSON');
    expectError(await call('POST', '/lobbies', { raw: '[1, 2]', headers: { 'content-type': 'application/json' } }), 400, 'invalid_request');
    expectError(await call('POST', '/gateway/handle', { raw: 'null', headers: { 'content-type': 'application/json' } }), 400, 'invalid_request');
    expectError(await call('POST', '/lobbies', { raw: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) }), 400, 'invalid_request');
    // v1 clients are not all careful with Content-Type: the body is JSON whatever it says.
    const textPlain = await call('POST', '/lobbies', { raw: JSON.stringify({ creator_device_id: admin }), headers: { 'content-type': 'text/plain' } });
    expect(textPlain.status, textPlain.text).toBe(200);
    const noType = await call('POST', '/lobbies', { raw: new TextEncoder().encode(JSON.stringify({ creator_device_id: admin })) });
    expect(noType.status, noType.text).toBe(200);

    const pad = 'x'.repeat(MAX_BODY_BYTES);
    const big = expectError(await post('/lobbies', { creator_device_id: admin, pad }), 413, 'payload_too_large');
    expect(big.error.details).toEqual({ max_bytes: MAX_BODY_BYTES });
    expectError(await handle(admin, 'lobby.room_snapshot', { lobby_id: 'x', room: { pad } }), 413, 'payload_too_large');
    // Chunked, without a Content-Length: counted while read.
    const chunks = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(`{"creator_device_id":"${admin}","pad":"`));
        for (let i = 0; i < 40; i++) c.enqueue(new TextEncoder().encode('y'.repeat(8192)));
        c.enqueue(new TextEncoder().encode('"}'));
        c.close();
      },
    });
    const chunked = await fetch(`${h.app.httpUrl}/lobbies`, { method: 'POST', body: chunks, duplex: 'half' } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as HttpErrorBody).error.code).toBe('payload_too_large');
    // The service is still fine afterwards.
    expect((await post('/lobbies', { creator_device_id: admin })).status).toBe(200);

    const notFound = expectError(await get('/nope'), 404, 'invalid_request');
    expect(notFound.detail).toBe('Not Found');
    expectError(await post(`/lobbies/${crypto.randomUUID()}/dance`, {}), 404, 'invalid_request');
    const wrong = expectError(await call('DELETE', '/lobbies'), 405, 'invalid_request');
    expect(wrong.detail).toBe('Method Not Allowed');
    const wrongRes = await call('PUT', '/gateway/handle');
    expect(wrongRes.status).toBe(405);
    expect(wrongRes.headers.get('allow')).toBe('POST');
    expectError(await get('/gateway/handle'), 405, 'invalid_request');
    expectError(await post('/health', {}), 405, 'invalid_request');
    expectError(await call('DELETE', `/lobbies/${crypto.randomUUID()}`), 405, 'invalid_request');
    expectError(await get('/lobbies/%zz'), 400, 'invalid_request');
  });
});

describe('http shim - /gateway/handle', () => {
  it('gateway - lobby commands run as client.device_id and reply with the command reply', async () => {
    const admin = device('admin');
    const guest = device('guest');
    const stranger = device('stranger');
    // `data` may be left out (it means {}).
    const created = await handle(admin, 'lobby.create');
    expect(created.status, created.text).toBe(200);
    const lobby = Lobby.parse(created.body);
    const L = lobby.lobby_id;
    expect(lobby.admin_device_id).toBe(admin);

    const joined = await handle(guest, 'lobby.join', { code: lobby.code });
    expect(Lobby.parse(joined.body).participants.map((p) => p.device_id)).toEqual([admin, guest]);
    expect((await handle(admin, 'lobby.step_update', { lobby_id: L, step_index: 3 })).body).toEqual({ ok: true, step_index: 3 });
    expect((await handle(guest, 'lobby.presence', { connected: false })).body).toEqual({ ok: true, lobbies: [L] });
    const byCode = await handle(stranger, 'lobby.get', { code: lobby.code });
    expect(byCode.body.step_index).toBe(3);
    expect(byCode.body.participants[1]).toMatchObject({ device_id: guest, connected: false });
    const page = await handle(guest, 'lobby.events', { lobby_id: L });
    expect(EventsReply.parse(page.body).events.map((e) => e.type)).toEqual([
      'lobby.updated',
      'lobby.updated',
      'lobby.step_update',
      'lobby.updated',
    ]);
    // Over /gateway/handle the caller is a device: the member check applies.
    expectError(await handle(stranger, 'lobby.events', { lobby_id: L }), 403, 'forbidden');
    expectError(await handle(guest, 'lobby.close', { lobby_id: L }), 403, 'forbidden');

    const step = await h.client.waitFor(L, 'lobby.step_update');
    expect(step[0]!.data).toEqual({ lobby_id: L, step_index: 3, source_device_id: admin });
    expect(step[0]!.targets.device_ids).toEqual([guest]);

    const unknown = expectError(await handle(admin, 'lobby.dance', {}), 400, 'invalid_request');
    expect(unknown.error.details?.issues).toEqual([expect.objectContaining({ path: 'message.event' })]);
    expectError(await handle(admin, 'lobby.create', [1, 2]), 400, 'invalid_request');
    expectError(await handle(admin, 'lobby.create', { max_participants: 'many' }), 400, 'invalid_request');
    expectError(await post('/gateway/handle', { message: { event: 'lobby.create', data: {} } }), 400, 'invalid_request');
    // The Gateway's envelope is read liberally too: an extra field is ignored, a null ip or
    // request_id means absent (the v1 Gateway sends `request_id: null`).
    const extra = await post('/gateway/handle', {
      client: { device_id: admin, connection_id: 'c', ip: null, x: 1 },
      message: { event: 'lobby.create', request_id: null, data: {} },
    });
    expect(extra.status, extra.text).toBe(200);
    const withIp = await post('/gateway/handle', {
      client: { device_id: admin, connection_id: 'c', ip: '10.0.0.1' },
      message: { event: 'lobby.get', request_id: null, data: { lobby_id: L } },
    });
    expect(withIp.status, withIp.text).toBe(200);
  });

  it('gateway - a measurement session runs through /gateway/handle with roles from /lobbies/{id}/roles', async () => {
    const admin = device('admin');
    const spk = device('spk');
    const m1 = device('m1');
    const m2 = device('m2');
    const { lobby_id: L, code } = await createLobby(admin);
    for (const d of [spk, m1, m2]) expect((await post('/lobbies/join', { code, device_id: d })).status).toBe(200);
    const assign = (target: string, role: string, slot: string) =>
      post(`/lobbies/${L}/roles`, { admin_device_id: admin, target_device_id: target, role, role_slot_id: slot });
    for (const r of [await assign(spk, 'speaker', 'S1'), await assign(m1, 'microphone', 'M1'), await assign(m2, 'microphone', 'M2')]) {
      expect(r.body).toEqual({ ok: true });
    }

    const created = await handle(admin, 'measurement.create_session', {
      job_id: 'job-http',
      lobby_id: L,
      speakers: [{ device_id: spk, slot_id: 'S1' }],
      microphones: [
        { device_id: m1, slot_id: 'M1' },
        { device_id: m2, slot_id: 'M2' },
      ],
    });
    expect(created.status, created.text).toBe(200);
    expect(created.body).toMatchObject({ job_id: 'job-http', lobby_id: L, state: 'created', total_speakers: 1, total_microphones: 2 });
    const S = created.body.session_id as string;
    const ok = async (deviceId: string, event: string, data: Record<string, unknown> = {}) => {
      const r = await handle(deviceId, event, { session_id: S, ...data });
      expect(r.status, `${event} by ${deviceId}: ${r.text}`).toBe(200);
      return r.body;
    };

    // A step out of order is refused and changes nothing.
    const early = expectError(await handle(spk, 'measurement.ready', { session_id: S }), 409, 'wrong_phase');
    expect(early.error.details).toMatchObject({ phase: 'idle' });
    await ok(admin, 'measurement.start_speaker');
    for (const d of [spk, m1, m2]) expect(await ok(d, 'measurement.client_ready')).toMatchObject({ status: 'accepted' });
    expect(await ok(m1, 'measurement.ready')).toMatchObject({ status: 'duplicate' });
    const audio = await h.client.waitFor(L, 'measurement.request_audio');
    expect(audio[0]!.data.audio_url).toBe(`https://api.example.test/v1/measurement/audio?session_id=${S}`);
    await ok(spk, 'measurement.speaker_audio_ready', { audio_hash: 'h1' });
    for (const d of [m1, m2]) await ok(d, 'measurement.recording_started');
    await ok(spk, 'measurement.speaker_finished');
    for (const d of [m1, m2]) await ok(d, 'measurement.recording_uploaded', { upload_name: `${d}.wav` });

    const done = await h.client.waitFor(L, 'measurement.session_complete');
    expect(done[0]!.data).toMatchObject({ session_id: S, job_id: 'job-http', completed_speakers: ['S1'], audio_hash: 'h1' });
    expect(await ok(m2, 'measurement.session_status')).toMatchObject({ state: 'completed', phase: 'completed', completed_speakers: 1 });
    expectError(await handle(device('stranger'), 'measurement.session_status', { session_id: S }), 403, 'forbidden');
    expect((await get(`/lobbies/${L}`)).body).toMatchObject({ state: 'open', active_session_id: null });
  });
});

describe('http shim - the same action over NATS and over HTTP', () => {
  /** Replaces ids, codes and times by stable names, so two runs compare equal. */
  function normalizer(names: Record<string, string>) {
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
    const walk = (v: unknown): unknown => {
      if (typeof v === 'string') return names[v] ?? (iso.test(v) ? '<time>' : v);
      if (Array.isArray(v)) return v.map(walk);
      if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
      return v;
    };
    return walk;
  }

  it('parity - the same actions give the same replies and the same broadcasts', async () => {
    async function scenario(over: 'nats' | 'http') {
      const admin = device('admin');
      const g1 = device('g1');
      const g2 = device('g2');
      const replies: unknown[] = [];
      let L = '';
      let code = '';
      const nats = h.client;
      if (over === 'nats') {
        const lobby = await nats.call('lobby.create', admin, {});
        ({ lobby_id: L, code } = lobby);
        const { lobby_id, code: c, admin_device_id, state } = lobby;
        replies.push({ lobby_id, code: c, admin_device_id, state });
        replies.push(await nats.call('lobby.join', g1, { code }));
        replies.push(await nats.call('lobby.join', g2, { code }));
        replies.push(await nats.call('role.assign', admin, { lobby_id: L, target_device_id: g1, role: 'speaker', role_slot_id: 'S1' }));
        replies.push((await nats.send('role.assign', g2, { lobby_id: L, target_device_id: g1, role: 'none' })).error);
        replies.push(await nats.call('lobby.step_update', admin, { lobby_id: L, step_index: 2 }));
        replies.push(await nats.call('lobby.get', admin, { lobby_id: L }));
        replies.push(await nats.call('lobby.start', admin, { lobby_id: L }));
        replies.push(await nats.call('lobby.leave', g2, { lobby_id: L }));
        replies.push(await nats.call('lobby.leave', admin, { lobby_id: L }));
      } else {
        const created = await post('/lobbies', { creator_device_id: admin });
        ({ lobby_id: L, code } = created.body);
        replies.push(created.body);
        replies.push((await post('/lobbies/join', { code, device_id: g1 })).body);
        replies.push((await post('/lobbies/join', { code, device_id: g2 })).body);
        replies.push((await post(`/lobbies/${L}/roles`, { admin_device_id: admin, target_device_id: g1, role: 'speaker', role_slot_id: 'S1' })).body);
        replies.push((await post(`/lobbies/${L}/roles`, { admin_device_id: g2, target_device_id: g1, role: 'none' })).body.error);
        replies.push((await handle(admin, 'lobby.step_update', { lobby_id: L, step_index: 2 })).body);
        replies.push((await get(`/lobbies/${L}`)).body);
        replies.push((await post(`/lobbies/${L}/start`, { admin_device_id: admin })).body);
        replies.push((await post(`/lobbies/${L}/leave`, { device_id: g2 })).body);
        replies.push((await post(`/lobbies/${L}/leave`, { device_id: admin })).body);
      }
      const broadcasts = await waitFor(() => {
        const ups = nats.of(L);
        return ups.length >= 9 ? ups : undefined;
      });
      const norm = normalizer({ [admin]: 'admin', [g1]: 'g1', [g2]: 'g2', [L]: 'L', [code]: 'CODE' });
      const shape = (b: Envelope) => ({ event: b.event, data: b.data, targets: b.targets, session_id: b.session_id });
      return { replies: norm(replies), broadcasts: norm(broadcasts.map(shape)), ids: broadcasts.map((b) => b.id) };
    }

    const [viaNats, viaHttp] = await Promise.all([scenario('nats'), scenario('http')]);
    expect(viaHttp.replies).toEqual(viaNats.replies);
    expect(viaHttp.broadcasts).toEqual(viaNats.broadcasts);
    expect((viaHttp.broadcasts as Array<{ event: string; data: { type?: string } }>).map((b) => b.data.type ?? b.event)).toEqual([
      'lobby_created',
      'participant_joined',
      'participant_joined',
      'role_assigned',
      'lobby.step_update',
      'measurement_started',
      'participant_left',
      'participant_left',
      'admin_changed',
    ]);
    for (const run of [viaNats, viaHttp]) expect([...run.ids].sort((a, b) => a - b)).toEqual(run.ids);
  });
});

describe('http shim - internal token', () => {
  const base = () => locked.app.httpUrl;

  it('auth - with HTTP_AUTH_TOKEN every path but /health needs it, in either header', async () => {
    const admin = device('admin');
    const health = await get('/health', { base: base() });
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ service: 'lobby', ok: true, checks: { database: true, nats: true } });

    const none = expectError(await post('/lobbies', { creator_device_id: admin }, { base: base() }), 401, 'unauthorized');
    expect(none.detail).toBe('missing or wrong internal token');
    for (const headers of [
      { [HttpHeader.internalToken]: `${TOKEN.slice(0, -1)}X` } as Record<string, string>,
      { [HttpHeader.internalToken]: 'short' },
      { [HttpHeader.internalToken]: TOKEN.repeat(3) },
      { [HttpHeader.internalToken]: '' },
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: `Basic ${TOKEN}` },
      { authorization: TOKEN },
    ]) {
      const r = await post('/lobbies', { creator_device_id: admin }, { base: base(), headers });
      expectError(r, 401, 'unauthorized');
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
    }
    for (const path of ['/openapi.json', '/nope', `/lobbies/${crypto.randomUUID()}`, `/lobbies/${crypto.randomUUID()}/events`]) {
      expectError(await get(path, { base: base() }), 401, 'unauthorized');
    }
    const refused = await handle(admin, 'lobby.create', {}, {}, { base: base(), headers: { [HttpHeader.requestId]: 'req-401' } });
    expectError(refused, 401, 'unauthorized');
    expect(refused.headers.get(HttpHeader.requestId)).toBe('req-401');

    const viaHeader = await post('/lobbies', { creator_device_id: admin }, { base: base(), headers: { [HttpHeader.internalToken]: TOKEN } });
    expect(viaHeader.status, viaHeader.text).toBe(200);
    const viaBearer = await get(`/lobbies/${viaHeader.body.lobby_id}`, { base: base(), headers: { authorization: `Bearer ${TOKEN}` } });
    expect(viaBearer.status).toBe(200);
    const lowercase = await handle(admin, 'lobby.get', { lobby_id: viaHeader.body.lobby_id }, {}, { base: base(), headers: { authorization: `bearer ${TOKEN}` } });
    expect(lowercase.status).toBe(200);
    expect((await get('/openapi.json', { base: base(), headers: { [HttpHeader.internalToken]: TOKEN } })).status).toBe(200);
    expectError(await get('/nope', { base: base(), headers: { [HttpHeader.internalToken]: TOKEN } }), 404, 'invalid_request');
  });

  it('auth - without HTTP_AUTH_TOKEN nothing needs a token (and a stray one is ignored)', async () => {
    expect((await get('/openapi.json')).status).toBe(200);
    const r = await post('/lobbies', { creator_device_id: device('admin') }, { headers: { authorization: 'Bearer whatever' } });
    expect(r.status).toBe(200);
  });
});

describe('http shim - OpenAPI', () => {
  it('openapi - /openapi.json describes every path, body, reply, the error body and the auth', async () => {
    const r = await get('/openapi.json');
    expect(r.status).toBe(200);
    const doc = r.body;
    expect(doc.openapi).toBe('3.1.0');
    for (const route of Object.values(httpRoutes)) {
      const op = doc.paths[route.path]?.[route.method.toLowerCase()];
      expect(op, `${route.method} ${route.path}`).toBeDefined();
      expect(op.responses['200'].content['application/json'].schema).toBeDefined();
      expect(op.responses['4XX'].$ref).toBe('#/components/responses/Error');
      if ('body' in route) expect(op.requestBody.content['application/json'].schema.$ref).toMatch(/^#\/components\/schemas\//);
    }
    expect(doc.paths['/health'].get.security).toEqual([]);
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['bearerToken', 'internalToken']);
    const schemas = doc.components.schemas;
    expect(schemas.Error.required.sort()).toEqual(['detail', 'error']);
    expect(schemas.CreateLobbyRequest).toMatchObject({ required: ['creator_device_id'] });
    // Requests are liberal: unknown fields are allowed (and ignored).
    expect(schemas.CreateLobbyRequest.additionalProperties).not.toBe(false);
    expect(schemas.Lobby.required).toContain('participants');
    expect(doc.paths['/lobbies/{lobby_id}/events'].get.parameters).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          name: 'limit',
          in: 'query',
          schema: expect.objectContaining({ anyOf: expect.arrayContaining([expect.objectContaining({ maximum: 1000 })]) }),
        }),
      ]),
    );
    // Every $ref resolves.
    const refs = [...r.text.matchAll(/"\$ref":"#\/components\/(\w+)\/([\w.-]+)"/g)];
    expect(refs.length).toBeGreaterThan(10);
    for (const [, kind, name] of refs) expect(doc.components[kind!]?.[name!], `${kind}/${name}`).toBeDefined();
    expect(doc.webhooks.broadcast.post.requestBody.content['application/json'].schema.$ref).toBe('#/components/schemas/Broadcast');
  });
});
