// The dispatcher's decoding, identity and error rules, without I/O: a table of in-memory
// handlers stands in for the lobby handlers (NATS and the database are not involved).
import { describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES, type Subject } from '../../subjects/index.js';
import { ServiceError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { Dispatcher, type Handler, type Outcome } from '../../src/transport/dispatch.js';
import type { IdempotencyStore } from '../../src/transport/idempotency.js';
import { TokenBuckets } from '../../src/transport/limits.js';

const seen: Array<{ subject: string; req: unknown; device: string }> = [];
const echo =
  (subject: string): Handler =>
  async (req, ctx) => {
    seen.push({ subject, req, device: ctx.deviceId });
    return { ok: true, req };
  };

function dispatcher(handlers: Partial<Record<Subject, Handler>>, limits = new TokenBuckets(10_000, 10_000)) {
  // Never reached: these tests send no Idempotency-Key, or one refused before any lookup.
  const idempotency = {} as IdempotencyStore;
  return new Dispatcher({ handlers, log: createLogger('silent'), limits, idempotency });
}

const d = dispatcher({
  'lobby.create': echo('lobby.create'),
  'lobby.get': echo('lobby.get'),
  'role.assign': echo('role.assign'),
  'measurement.ready': echo('measurement.ready'),
});

function refused(o: Outcome) {
  expect(o.ok).toBe(false);
  if (o.ok) throw new Error('unreachable');
  return o.error;
}
const send = (body: Uint8Array | string, extra: Record<string, unknown> = {}, subject: Subject = 'lobby.create') =>
  d.dispatch({ subject, body, deviceId: 'dev-1', ...extra });

describe('dispatch decoding', () => {
  it('dispatch - an empty or blank body means {}', async () => {
    for (const body of [new Uint8Array(0), '', '  \n ']) {
      const o = await send(body);
      expect(o).toEqual({ ok: true, reply: { ok: true, req: {} } });
    }
  });

  it('dispatch - a body that is not JSON is invalid_request with issues', async () => {
    for (const body of ['{', 'not json', '{"max_participants": 4,}', new Uint8Array([0xff, 0xfe, 0x7b, 0x7d])]) {
      const e = refused(await send(body));
      expect(e.code).toBe('invalid_request');
      expect(e.details?.issues).toEqual([{ path: '', message: expect.any(String) }]);
    }
  });

  it('dispatch - JSON that is not an object is invalid_request with issues', async () => {
    for (const body of ['[]', '[{}]', '"x"', '42', 'null', 'true']) {
      const e = refused(await send(body));
      expect(e.code, body).toBe('invalid_request');
      expect(e.message).toMatch(/object/);
      expect(e.details?.issues).toEqual([{ path: '', message: expect.any(String) }]);
    }
  });

  it('dispatch - unknown fields are ignored: not passed on, logged at debug', async () => {
    const lines: string[] = [];
    const logged = new Dispatcher({
      handlers: { 'lobby.create': echo('lobby.create'), 'measurement.ready': echo('measurement.ready') },
      log: createLogger('debug', { write: (l: string) => void lines.push(l) }),
      limits: new TokenBuckets(10_000, 10_000),
      idempotency: {} as IdempotencyStore,
    });
    const o = await logged.dispatch({ subject: 'lobby.create', body: '{"max_participants": 4, "colour": "red"}', deviceId: 'dev-1' });
    expect(o).toEqual({ ok: true, reply: { ok: true, req: { max_participants: 4 } } });
    // The app sends its own device_id inside step data: ignored, the acting device is the header's.
    const step = await logged.dispatch({
      subject: 'measurement.ready',
      body: '{"session_id": "s-1", "device_id": "someone-else"}',
      deviceId: 'dev-1',
    });
    expect(step).toEqual({ ok: true, reply: { ok: true, req: { session_id: 's-1' } } });
    const ignored = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'unknown request fields ignored');
    expect(ignored.map((l) => l.ignored_fields)).toEqual([['colour'], ['device_id']]);
  });

  it('dispatch - null for an optional field means absent', async () => {
    expect(await send('{"max_participants": null}')).toEqual({ ok: true, reply: { ok: true, req: {} } });
    const o = await send(
      JSON.stringify({ lobby_id: 'l', target_device_id: 't', role: 'none', role_slot_id: null, role_slot_label: null }),
      {},
      'role.assign',
    );
    expect(o.ok).toBe(true);
    if (!o.ok) return;
    const req = (o.reply as { req: Record<string, unknown> }).req;
    expect(req.role_slot_id).toBeUndefined();
    expect(req.role_slot_label).toBeUndefined();
    // null is not a value for a required field.
    expect(refused(await send('{"lobby_id": null, "target_device_id": "t", "role": "none"}', {}, 'role.assign')).code).toBe(
      'invalid_request',
    );
  });

  it('dispatch - schema violations list each issue with its path', async () => {
    const nested = refused(
      await send(JSON.stringify({ lobby_id: 'x', target_device_id: 'y', role: 'drummer', role_slot_id: 'z'.repeat(65) }), {}, 'role.assign'),
    );
    const paths = (nested.details?.issues as Array<{ path: string; message: string }>).map((i) => i.path).sort();
    expect(paths).toEqual(['role', 'role_slot_id']);

    const bounds = refused(await send('{"max_participants": 65}'));
    expect(bounds.details?.issues).toEqual([{ path: 'max_participants', message: expect.any(String) }]);
    const wrongType = refused(await send('{"max_participants": "4"}'));
    expect(wrongType.details?.issues).toEqual([{ path: 'max_participants', message: expect.any(String) }]);
  });

  it('dispatch - a string PostgreSQL cannot store is invalid_request naming the field', async () => {
    const label = refused(
      await send(JSON.stringify({ lobby_id: 'l', target_device_id: 't', role: 'speaker', role_slot_label: 'a\u0000b' }), {}, 'role.assign'),
    );
    expect(label.code).toBe('invalid_request');
    expect(label.details?.issues).toEqual([{ path: 'role_slot_label', message: expect.stringContaining('NUL') }]);
    // A lone surrogate, as JSON escapes it.
    const lone = refused(await send('{"lobby_id": "l", "target_device_id": "t", "role": "speaker", "role_slot_label": "x\\ud800"}', {}, 'role.assign'));
    expect(lone.details?.issues).toEqual([{ path: 'role_slot_label', message: expect.stringContaining('surrogate') }]);
    // Deep inside free-form data too, in keys as well as values.
    const room = dispatcher({ 'lobby.room_snapshot': echo('lobby.room_snapshot') });
    const deep = refused(
      await room.dispatch({
        subject: 'lobby.room_snapshot',
        body: JSON.stringify({ lobby_id: 'l', room: { walls: [{ name: 'ok' }, { name: 'x\u0000' }], ['k\u0000']: 1 } }),
        deviceId: 'dev-1',
      }),
    );
    expect((deep.details?.issues as Array<{ path: string }>).map((i) => i.path)).toEqual(['room.walls.1.name', 'room.k\u0000']);
    // An unknown field with a NUL is simply dropped.
    expect((await send('{"junk": "\\u0000"}')).ok).toBe(true);
  });

  it('dispatch - a body up to 256 KiB is read, one byte more is payload_too_large', async () => {
    const pad = (n: number) => {
      const head = '{"max_participants": 4, "x": "';
      return `${head}${'a'.repeat(n - head.length - 2)}"}`;
    };
    expect(Buffer.byteLength(pad(MAX_BODY_BYTES))).toBe(MAX_BODY_BYTES);
    // Exactly the limit is read ("x" is an unknown field, ignored).
    expect((await send(pad(MAX_BODY_BYTES))).ok).toBe(true);
    const e = refused(await send(new TextEncoder().encode(pad(MAX_BODY_BYTES + 1))));
    expect(e.code).toBe('payload_too_large');
    expect(e.status).toBe(413);
    // Multi-byte characters count as bytes, not characters.
    const wide = `{"x": "${'é'.repeat(MAX_BODY_BYTES / 2)}"}`;
    expect(refused(await send(wide)).code).toBe('payload_too_large');
  });
});

describe('dispatch identity', () => {
  it('dispatch - a missing or bad Device-Id is invalid_request', async () => {
    for (const deviceId of [undefined, '', 'x'.repeat(201), ' leading', 'trailing ', 'tab\there', 'nul\u0000', 'ünï']) {
      const e = refused(await d.dispatch({ subject: 'lobby.create', body: '{}', deviceId }));
      expect(e.code, JSON.stringify(deviceId)).toBe('invalid_request');
      expect(e.message).toMatch(/Device-Id/);
    }
    // Up to 200 characters, as the v1 Gateway accepts.
    const ok = await d.dispatch({ subject: 'lobby.create', body: '{}', deviceId: 'x'.repeat(200) });
    expect(ok.ok).toBe(true);
    expect((await d.dispatch({ subject: 'lobby.create', body: '{}', deviceId: 'a b~!' })).ok).toBe(true);
  });

  it('dispatch - an Idempotency-Key over 128 characters or empty is invalid_request', async () => {
    for (const key of ['', 'k'.repeat(129)]) {
      const e = refused(await send('{}', { idempotencyKey: key }));
      expect(e.code).toBe('invalid_request');
      expect(e.message).toMatch(/Idempotency-Key/);
    }
  });

  it('dispatch - the handler sees the acting device and the parsed request', async () => {
    seen.length = 0;
    await d.dispatch({ subject: 'lobby.create', body: '{"max_participants": 7}', deviceId: 'phone-42' });
    expect(seen).toEqual([{ subject: 'lobby.create', req: { max_participants: 7 }, device: 'phone-42' }]);
  });
});

describe('dispatch routing and errors', () => {
  it('dispatch - aliases use their target handler and only registered subjects are served', async () => {
    seen.length = 0;
    const o = await d.dispatch({ subject: 'measurement.client_ready', body: '{"session_id": "s"}', deviceId: 'dev' });
    expect(o.ok).toBe(true);
    expect(seen.map((s) => s.subject)).toEqual(['measurement.ready']);
    expect(d.serves('measurement.client_ready')).toBe(true);
    expect(d.serves('lobby.create')).toBe(true);
    expect(d.serves('lobby.kick')).toBe(false);
    expect(d.serves('lobby.nope')).toBe(false);
    expect(d.serves('__proto__')).toBe(false);
  });

  it('dispatch - a thrown ServiceError is the reply; anything else is a generic internal', async () => {
    const x = dispatcher({
      'lobby.create': async () => {
        throw new ServiceError('lobby_full', 'the lobby is full', { max_participants: 2 });
      },
      'lobby.get': async () => {
        throw new Error('relation "lobbies" does not exist; password=hunter2');
      },
    });
    const full = refused(await x.dispatch({ subject: 'lobby.create', body: '{}', deviceId: 'd' }));
    expect(full).toMatchObject({ code: 'lobby_full', details: { max_participants: 2 } });
    const internal = refused(await x.dispatch({ subject: 'lobby.get', body: '{"code": "ABCDEF"}', deviceId: 'd' }));
    expect(internal.code).toBe('internal');
    expect(internal.message).toBe('internal error');
    expect(JSON.stringify({ m: internal.message, d: internal.details })).not.toMatch(/hunter2|relation/);
    expect((internal.cause as Error).message).toMatch(/hunter2/); // kept for the log only
  });

  it('dispatch - the per-device token bucket refuses with retry_after_ms', async () => {
    const x = dispatcher({ 'lobby.create': echo('lobby.create') }, new TokenBuckets(1, 2));
    expect((await x.dispatch({ subject: 'lobby.create', body: '{}', deviceId: 'a' })).ok).toBe(true);
    expect((await x.dispatch({ subject: 'lobby.create', body: '{}', deviceId: 'a' })).ok).toBe(true);
    const e = refused(await x.dispatch({ subject: 'lobby.create', body: '{}', deviceId: 'a' }));
    expect(e.code).toBe('rate_limited');
    expect(e.details?.retry_after_ms).toBeGreaterThan(0);
    expect((await x.dispatch({ subject: 'lobby.create', body: '{}', deviceId: 'b' })).ok).toBe(true);
  });
});
