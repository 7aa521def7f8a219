// A catalogue of hostile input over NATS and over the HTTP shim (CONTRACT sections 2 and 4):
// bodies that are not JSON objects, wrong types, missing and oversized headers, bodies at the
// size limit, deep nesting, odd Unicode, SQL and markup, unknown ids, and a burst from one
// device. Each case expects its exact error code (and status); afterwards both services still
// answer normally and /health is ok. Prints how many requests the catalogue sent.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Header, MAX_BODY_BYTES, MAX_JSON_DEPTH } from '../../subjects/index.js';
import { Hostile, invalidAt, ok, refused, type Answer } from '../helpers/hostile.js';
import { device, startHarness } from '../helpers/service.js';

type Harness = Awaited<ReturnType<typeof startHarness>>;
let h: Harness;
/** The default per-device rate limit (the test env raises it elsewhere). */
let strict: Harness;
let x: Hostile;
let xs: Hostile;
let admin: string;
let lobby: { lobby_id: string; code: string };
beforeAll(async () => {
  [h, strict] = await Promise.all([startHarness(), startHarness({ RATE_LIMIT_PER_SECOND: '20', RATE_LIMIT_BURST: '40' })]);
  x = new Hostile(h.client, h.app.httpUrl);
  xs = new Hostile(strict.client, strict.app.httpUrl);
  admin = device('admin');
  lobby = ok(await x.as(admin, 'lobby.create', {}));
});
afterAll(async () => {
  console.log(`[figures] hostile requests: ${(x?.sent ?? 0) + (xs?.sent ?? 0)}`);
  await Promise.all([h?.stop(), strict?.stop()]);
});

const NOT_OBJECTS = ['{', '{"code":', '[]', '"ABCDEF"', '42', 'null', 'true', '{"a":1}{"b":2}', '{"code":"ABCDEF",}', "{'code':'ABCDEF'}"];
const EMOJI = '🎤 Mic 🔊 👩‍👩‍👧 🇩🇪 𝄞';
const RTL = '\u200Fמיקרופון\u200E ميكروفون';
const COMBINING = 'e\u0301\u0301 Z\u0351\u0337a\u0310l\u0352g\u0315o \uFEFF\u200B\uFFFF';
const SQL = `'; drop table lobbies; --`;
const MARKUP = '<script>alert(1)</script>';
const HOSTILE_TEXT = [SQL, MARKUP, `" OR 1=1 --`, '$1 %s %n ${7*7} {{7*7}} \\x00'];
/** `n` objects nested in one another. */
const objects = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
/** `n` arrays nested in one another (1 byte a level: 256 KiB holds 131,072). */
const arrays = (n: number) => '['.repeat(n) + ']'.repeat(n);

/** A new lobby with its admin and a joined member. */
async function fresh(): Promise<{ admin: string; who: string; lobby: { lobby_id: string; code: string } }> {
  const a = device('admin');
  const l = ok(await x.as(a, 'lobby.create', {}));
  const who = device('m');
  ok(await x.as(who, 'lobby.join', { code: l.code }));
  return { admin: a, who, lobby: l };
}

/** Every logged event of a lobby (pages end early for big payloads). */
async function eventsOf(as: string, lobbyId: string): Promise<Array<{ id: number; payload: Record<string, any> }>> {
  const out: Array<{ id: number; payload: Record<string, any> }> = [];
  for (;;) {
    const page = ok(await x.as(as, 'lobby.events', { lobby_id: lobbyId, after_id: out.at(-1)?.id ?? 0, limit: 1000 })).events;
    if (page.length === 0) return out;
    out.push(...page);
  }
}

describe('hostile - bodies', () => {
  it('hostile - malformed and non-object JSON is invalid_request on NATS, v1 HTTP and /gateway/handle', async () => {
    for (const raw of NOT_OBJECTS) {
      invalidAt(await x.as(device('g'), 'lobby.join', raw), '');
      refused(await x.http('POST', '/lobbies/join', raw), 'invalid_request');
      refused(await x.http('POST', '/gateway/handle', raw), 'invalid_request');
    }
    // Not UTF-8.
    invalidAt(await x.as(device('g'), 'lobby.join', new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])), '');
    refused(await x.http('POST', '/lobbies/join', new Uint8Array([0xc3, 0x28])), 'invalid_request');
  });

  it('hostile - wrong types are invalid_request naming the field', async () => {
    const cases: Array<[Parameters<Hostile['as']>[1], Record<string, unknown>, string]> = [
      ['lobby.create', { max_participants: '10' }, 'max_participants'],
      ['lobby.create', { max_participants: 1.5 }, 'max_participants'],
      ['lobby.create', { max_participants: 1e3 }, 'max_participants'],
      ['lobby.join', { code: 123456 }, 'code'],
      ['lobby.join', { code: ['ABCDEF'] }, 'code'],
      ['lobby.join', {}, 'code'],
      ['lobby.get', { lobby_id: lobby.lobby_id, code: lobby.code }, ''],
      ['lobby.step_update', { lobby_id: lobby.lobby_id, step_index: -1 }, 'step_index'],
      ['lobby.step_update', { lobby_id: lobby.lobby_id, step_index: '1' }, 'step_index'],
      ['lobby.room_snapshot', { lobby_id: lobby.lobby_id, room: [1, 2] }, 'room'],
      ['lobby.room_snapshot', { lobby_id: lobby.lobby_id, room: 'a room' }, 'room'],
      ['lobby.presence', { connected: 'yes' }, 'connected'],
      ['role.assign', { lobby_id: lobby.lobby_id, target_device_id: admin, role: 'dj' }, 'role'],
      ['role.assign', { lobby_id: 42, target_device_id: admin, role: 'speaker' }, 'lobby_id'],
      ['measurement.create_session', { job_id: 'j', lobby_id: lobby.lobby_id, speakers: {}, microphones: [] }, 'speakers'],
      ['measurement.ready', { session_id: { $gt: '' } }, 'session_id'],
      ['lobby.events', { lobby_id: lobby.lobby_id, limit: 1_000_000 }, 'limit'],
    ];
    for (const [subject, data, path] of cases) {
      for (const [how, send] of [['nats', () => x.as(admin, subject, data)], ['http', () => x.gateway(admin, subject, data)]] as const) {
        const a = await send();
        expect(a.body?.error?.code, `${how} ${subject} ${JSON.stringify(data)}`).toBe('invalid_request');
        invalidAt(a, path);
      }
    }
    // A number JSON can write but not hold: Infinity once parsed.
    invalidAt(await x.as(admin, 'lobby.create', '{"max_participants":1e309}'), 'max_participants');
    invalidAt(await x.http('POST', '/lobbies', { creator_device_id: 5 }), 'creator_device_id');
    refused(await x.http('POST', '/gateway/handle', { client: { device_id: admin }, message: { event: 'lobby.create', data: [] } }), 'invalid_request');
    refused(await x.gateway(admin, 'lobby.nope', {}), 'invalid_request');
  });

  it('hostile - bodies just under 256 KiB are served, just over are payload_too_large', async () => {
    const frame = (fill: string) => JSON.stringify({ lobby_id: lobby.lobby_id, room: { blob: fill } });
    const fill = (bytes: number) => 'x'.repeat(bytes - frame('').length);
    const under = frame(fill(MAX_BODY_BYTES - 1));
    const over = frame(fill(MAX_BODY_BYTES + 1));
    expect([Buffer.byteLength(under), Buffer.byteLength(over)]).toEqual([MAX_BODY_BYTES - 1, MAX_BODY_BYTES + 1]);
    ok(await x.as(admin, 'lobby.room_snapshot', under));
    const stored = (await eventsOf(admin, lobby.lobby_id)).at(-1)!;
    expect(stored.payload.room).toEqual(JSON.parse(under).room);
    refused(await x.as(admin, 'lobby.room_snapshot', over), 'payload_too_large');
    // Multi-byte characters count as bytes, not characters.
    refused(await x.as(admin, 'lobby.room_snapshot', frame('🎤'.repeat(MAX_BODY_BYTES / 4))), 'payload_too_large');
    ok(await x.gateway(admin, 'lobby.room_snapshot', JSON.parse(frame(fill(MAX_BODY_BYTES - 200)))));
    refused(await x.gateway(admin, 'lobby.room_snapshot', JSON.parse(over)), 'payload_too_large');
    refused(await x.http('POST', '/lobbies/join', JSON.stringify({ code: 'ABCDEF', device_id: 'd', pad: 'x'.repeat(MAX_BODY_BYTES) })), 'payload_too_large');
  });

  it('hostile - 10,000 levels of nesting are refused naming the field, and the process lives', async () => {
    // Depths of the whole body (the body itself is level 1).
    for (const depth of [MAX_JSON_DEPTH + 1, 10_000]) {
      invalidAt(await x.as(admin, 'lobby.room_snapshot', `{"lobby_id":"${lobby.lobby_id}","room":${objects(depth - 1)}}`), 'room');
      // In an unknown field too: it would be walked to be dropped.
      invalidAt(await x.as(device('g'), 'lobby.join', `{"code":"ABCDEF","extra":${objects(depth - 1)}}`), 'extra');
      invalidAt(
        await x.http('POST', '/gateway/handle', `{"client":{"device_id":"d","connection_id":"c"},"message":{"event":"lobby.room_snapshot","data":${objects(depth - 2)}}}`),
        'message',
      );
    }
    for (const depth of [MAX_JSON_DEPTH + 1, 10_000, 130_000]) {
      invalidAt(await x.as(admin, 'lobby.room_snapshot', `{"lobby_id":"${lobby.lobby_id}","room":{"x":${arrays(depth - 2)}}}`), 'room');
    }
    // At the limit: stored and returned as sent.
    const room = JSON.parse(objects(MAX_JSON_DEPTH - 1));
    ok(await x.as(admin, 'lobby.room_snapshot', { lobby_id: lobby.lobby_id, room }));
    const withArrays = { x: JSON.parse(arrays(MAX_JSON_DEPTH - 2)) };
    ok(await x.as(admin, 'lobby.room_snapshot', { lobby_id: lobby.lobby_id, room: withArrays }));
    const events = await eventsOf(admin, lobby.lobby_id);
    expect(events.slice(-2).map((e) => e.payload.room)).toEqual([room, withArrays]);
  });
});

describe('hostile - headers', () => {
  it('hostile - Device-Id missing, 201 characters, 10 KB or not printable ASCII is invalid_request', async () => {
    refused(await x.nats('lobby.create', {}, {}), 'invalid_request');
    refused(await x.nats('lobby.create', { [Header.deviceId]: '' }, {}), 'invalid_request');
    for (const bad of ['d'.repeat(201), 'd'.repeat(10_240), 'dévice', 'tab\there', '🎤', 'bell\u0007']) {
      refused(await x.as(bad, 'lobby.create', {}), 'invalid_request');
      invalidAt(await x.http('POST', '/lobbies', { creator_device_id: bad }), 'creator_device_id');
      invalidAt(await x.gateway(bad, 'lobby.create', {}), 'client.device_id');
    }
    // 200 characters is the limit, and printable ASCII includes quotes and brackets.
    for (const fine of ['d'.repeat(200), SQL, MARKUP]) {
      expect(ok(await x.as(fine, 'lobby.create', {})).admin_device_id).toBe(fine);
      expect(ok(await x.http('POST', '/lobbies', { creator_device_id: fine })).admin_device_id).toBe(fine);
    }
  });

  it('hostile - Idempotency-Key of 129 characters or 10 KB is invalid_request; 128 is served', async () => {
    for (const key of ['k'.repeat(129), 'k'.repeat(10_240)]) {
      refused(await x.as(device('g'), 'lobby.create', {}, { [Header.idempotencyKey]: key }), 'invalid_request');
      refused(await x.gateway(device('g'), 'lobby.create', {}, { [Header.idempotencyKey]: key }), 'invalid_request');
    }
    const d = device('g');
    const key = 'k'.repeat(128);
    const first = ok(await x.as(d, 'lobby.create', {}, { [Header.idempotencyKey]: key }));
    expect(ok(await x.as(d, 'lobby.create', {}, { [Header.idempotencyKey]: key }))).toEqual(first);
  });

  it('hostile - unknown and correlation headers of 10 KB are carried, not choked on', async () => {
    const big = 'v'.repeat(10_240);
    ok(await x.as(device('g'), 'lobby.get', { lobby_id: lobby.lobby_id }, { 'X-Junk': big, [Header.connectionId]: big }));
    const echoed = await x.as(device('g'), 'lobby.get', { lobby_id: lobby.lobby_id }, { [Header.requestId]: big });
    ok(echoed);
    expect(echoed.header(Header.requestId)).toBe(big);
    ok(await x.http('GET', `/lobbies/${lobby.lobby_id}`, undefined, { 'X-Junk': big }));
  });
});

describe('hostile - text', () => {
  it('hostile - emoji, RTL marks and combining characters in labels and room data come back verbatim', async () => {
    const { admin, who, lobby } = await fresh();
    for (const label of [EMOJI, RTL, COMBINING, ...HOSTILE_TEXT]) {
      ok(await x.as(admin, 'role.assign', { lobby_id: lobby.lobby_id, target_device_id: who, role: 'microphone', role_slot_id: 'M1', role_slot_label: label }));
      const got = ok(await x.as(admin, 'lobby.get', { lobby_id: lobby.lobby_id }));
      expect(got.participants.find((p: { device_id: string }) => p.device_id === who).role_slot_label).toBe(label);
      const viaHttp = ok(await x.http('GET', `/lobbies/${lobby.lobby_id}`));
      expect(viaHttp.participants.find((p: { device_id: string }) => p.device_id === who).role_slot_label).toBe(label);
      expect(ok(await x.as(admin, 'lobby.profile_update', { lobby_id: lobby.lobby_id, profile_id: label })).profile_id).toBe(label);
    }
    const room = { [EMOJI]: RTL, [RTL]: [COMBINING, ...HOSTILE_TEXT], nested: { [COMBINING]: EMOJI }, html: MARKUP };
    ok(await x.as(admin, 'lobby.room_snapshot', { lobby_id: lobby.lobby_id, room }));
    ok(await x.gateway(admin, 'lobby.room_snapshot', { lobby_id: lobby.lobby_id, room }));
    const events = await eventsOf(admin, lobby.lobby_id);
    expect(events.slice(-2).map((e) => e.payload.room)).toEqual([room, room]);
    // The broadcast carries it as sent, too.
    await expect.poll(() => h.client.of(lobby.lobby_id, 'lobby.room_snapshot').some((b) => JSON.stringify(b.data.room) === JSON.stringify(room))).toBe(true);
    // SQL in a join code is just a code that names no lobby.
    refused(await x.as(device('g'), 'lobby.join', { code: SQL }), 'lobby_not_found');
    ok(await x.as(admin, 'lobby.get', { lobby_id: lobby.lobby_id }));
  });

  it('hostile - NUL and lone surrogates are invalid_request naming the field', async () => {
    const { admin, who, lobby } = await fresh();
    const assign = (label: string) => `{"lobby_id":"${lobby.lobby_id}","target_device_id":"${who}","role":"speaker","role_slot_id":"S9","role_slot_label":"${label}"}`;
    for (const bad of ['a\\u0000b', '\\ud800', 'x\\udc00y', '\\ud83c']) {
      invalidAt(await x.as(admin, 'role.assign', assign(bad)), 'role_slot_label');
      invalidAt(await x.as(admin, 'lobby.room_snapshot', `{"lobby_id":"${lobby.lobby_id}","room":{"walls":[{"name":"${bad}"}]}}`), 'room.walls.0.name');
      invalidAt(await x.as(admin, 'lobby.room_snapshot', `{"lobby_id":"${lobby.lobby_id}","room":{"${bad}":1}}`), `room.${JSON.parse(`"${bad}"`)}`);
      invalidAt(await x.as(admin, 'lobby.profile_update', `{"lobby_id":"${lobby.lobby_id}","profile_id":"${bad}"}`), 'profile_id');
      refused(await x.http('POST', `/lobbies/${lobby.lobby_id}/roles`, `{"admin_device_id":"${admin}","target_device_id":"${who}","role":"speaker","role_slot_label":"${bad}"}`), 'invalid_request');
      invalidAt(await x.http('POST', '/gateway/handle', `{"client":{"device_id":"${admin}","connection_id":"c"},"message":{"event":"role.assign","data":${assign(bad)}}}`), 'role_slot_label');
    }
    // Nothing was stored: the label is still none.
    const got = ok(await x.as(admin, 'lobby.get', { lobby_id: lobby.lobby_id }));
    expect(got.participants.find((p: { device_id: string }) => p.device_id === who).role_slot_label).toBeNull();
  });
});

describe('hostile - ids', () => {
  it('hostile - unknown lobby and session ids, uuid-shaped or not, are not found', async () => {
    const ids = [randomUUID(), 'not-a-uuid', SQL, '../../etc/passwd', '00000000-0000-0000-0000-000000000000'];
    for (const id of ids) {
      refused(await x.as(admin, 'lobby.get', { lobby_id: id }), 'lobby_not_found');
      refused(await x.as(admin, 'lobby.leave', { lobby_id: id }), 'lobby_not_found');
      refused(await x.as(admin, 'lobby.close', { lobby_id: id }), 'lobby_not_found');
      refused(await x.as(admin, 'role.assign', { lobby_id: id, target_device_id: admin, role: 'speaker' }), 'lobby_not_found');
      refused(await x.as(admin, 'measurement.session_status', { session_id: id }), 'session_not_found');
      refused(await x.as(admin, 'measurement.ready', { session_id: id }), 'session_not_found');
      refused(await x.gateway(admin, 'lobby.get', { lobby_id: id }), 'lobby_not_found');
      refused(await x.http('GET', `/lobbies/${encodeURIComponent(id)}`), 'lobby_not_found');
      refused(await x.http('POST', `/lobbies/${encodeURIComponent(id)}/leave`, { device_id: admin }), 'lobby_not_found');
    }
    refused(await x.as(admin, 'lobby.get', { code: 'ZZZZZZ' }), 'lobby_not_found');
    invalidAt(await x.as(admin, 'lobby.get', { lobby_id: 'x'.repeat(65) }), 'lobby_id');
  });
});

describe('hostile - bursts', () => {
  it('hostile - a 400-request burst from one device is rate_limited after the burst allowance', async () => {
    const owner = device('owner');
    const l = ok(await xs.as(owner, 'lobby.create', {}));
    const noisy = device('noisy');
    const started = Date.now();
    const answers: Answer[] = await Promise.all(Array.from({ length: 400 }, () => xs.as(noisy, 'lobby.get', { lobby_id: l.lobby_id })));
    const seconds = (Date.now() - started) / 1000;
    const served = answers.filter((a) => a.status === 200).length;
    const limited = answers.filter((a) => a.status !== 200);
    for (const a of limited) expect(refused(a, 'rate_limited').details?.retry_after_ms).toBeGreaterThan(0);
    // The burst allowance (40), plus what the bucket refilled (20 a second) while they arrived.
    expect(served).toBeGreaterThanOrEqual(40);
    expect(served).toBeLessThanOrEqual(40 + Math.ceil(20 * seconds) + 1);
    expect(limited.length).toBe(400 - served);
    // The same over HTTP, where it is a 429; other devices are not affected.
    const viaHttp = await Promise.all(Array.from({ length: 60 }, () => xs.gateway(noisy, 'lobby.get', { lobby_id: l.lobby_id })));
    expect(viaHttp.filter((a) => a.status === 429).length).toBeGreaterThan(0);
    for (const a of viaHttp.filter((r) => r.status !== 200)) expect(refused(a, 'rate_limited').details?.retry_after_ms).toBeGreaterThan(0);
    ok(await xs.as(device('quiet'), 'lobby.get', { lobby_id: l.lobby_id }));
    console.log(`[figures] burst of 400 from one device: ${served} served in ${seconds.toFixed(2)} s, ${limited.length} rate_limited`);
  });
});

describe('hostile - afterwards', () => {
  it('hostile - after the catalogue both services answer normally and /health is ok', async () => {
    for (const [hx, harness] of [[x, h], [xs, strict]] as const) {
      const d = device('after');
      const created = ok(await hx.as(d, 'lobby.create', {}));
      ok(await hx.as(device('after2'), 'lobby.join', { code: created.code }));
      const health = await hx.http('GET', '/health');
      expect(health.status).toBe(200);
      expect(health.body).toEqual({ service: 'lobby', ok: true, checks: { database: true, nats: true } });
      expect(harness.app.db.health.reachable).toBe(true);
    }
  });
});
