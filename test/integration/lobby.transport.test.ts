// The NATS transport as the Gateway sees it: headers, body decoding, limits, error replies,
// the `lobby` micro service ($SRV.PING/INFO/STATS) and replicas in one queue group.
import { describe, expect, it } from 'vitest';
import { createInbox, headers as natsHeaders, type Msg } from '@nats-io/nats-core';
import { Header, MAX_BODY_BYTES, SERVICE, subjectNames, type Subject } from '../../subjects/index.js';
import { waitFor } from '../helpers/infra.js';
import { device, startService } from '../helpers/service.js';
import { Tap, withTappedHarness, type Harness, expectError, lobbyWith, settle } from '../helpers/lobby.js';

let h: Harness;
let tap: Tap;
withTappedHarness((started) => ({ h, tap } = started));

/** A raw request: the reply message as it is on the wire. */
function raw(subject: Subject, body: string | Uint8Array, hdrs: Record<string, string> = {}): Promise<Msg> {
  const hh = natsHeaders();
  for (const [k, v] of Object.entries(hdrs)) hh.set(k, v);
  return h.client.nc.request(`${h.env.prefix}${subject}`, body, { headers: hh, timeout: 10_000 });
}

interface MicroInfo {
  type: string;
  name: string;
  id: string;
  version: string;
  endpoints: Array<{
    name: string;
    subject: string;
    queue_group: string;
    num_requests?: number;
    num_errors?: number;
    last_error?: string;
    processing_time?: number;
    average_processing_time?: number;
  }>;
}

/** Control replies of `$SRV.<verb>.lobby`: other test files' services answer too; keep ours. */
async function ourServices(verb: 'INFO' | 'STATS', count: number): Promise<MicroInfo[]> {
  const inbox = createInbox();
  const got: MicroInfo[] = [];
  const sub = h.client.nc.subscribe(inbox, { callback: (_e, m) => void got.push(m.json<MicroInfo>()) });
  try {
    h.client.nc.publish(`$SRV.${verb}.${SERVICE.name}`, '', { reply: inbox });
    const ours = () => got.filter((s) => s.endpoints.length > 0 && s.endpoints.every((e) => e.subject.startsWith(h.env.prefix)));
    return await waitFor(() => (ours().length >= count ? ours() : undefined), { message: `${count} of our services on $SRV.${verb}` });
  } finally {
    sub.unsubscribe();
  }
}

async function stats(id: string): Promise<MicroInfo> {
  return (await h.client.nc.request(`$SRV.STATS.${SERVICE.name}.${id}`, '', { timeout: 5_000 })).json<MicroInfo>();
}
const requestsOf = (s: MicroInfo, endpoint: string) => s.endpoints.find((e) => e.name === endpoint)?.num_requests ?? 0;

describe('headers', () => {
  it('transport - a missing or bad Device-Id is invalid_request', async () => {
    expectError(await h.client.send('lobby.create', 'x', {}, { noDevice: true }), 'invalid_request');
    // (NATS itself trims header values, so surrounding spaces never reach the service.)
    for (const bad of ['d'.repeat(201), 'dévice', 'tab\there']) {
      const e = expectError(await h.client.send('lobby.create', bad, {}), 'invalid_request');
      expect(e.message).toMatch(/Device-Id/);
    }
    // Up to 200 characters, as the v1 Gateway accepts; the app's are UUIDs.
    expect((await h.client.send('lobby.create', 'd'.repeat(200), {})).ok).toBe(true);
    expect((await h.client.send('lobby.create', crypto.randomUUID(), {})).ok).toBe(true);
  });

  it('transport - Request-Id is echoed on success and on error replies', async () => {
    const ok = await raw('lobby.create', '{}', { [Header.deviceId]: device('a'), [Header.requestId]: 'req-123' });
    expect(ok.headers?.get(Header.requestId)).toBe('req-123');
    const err = await raw('lobby.get', '{}', { [Header.deviceId]: device('a'), [Header.requestId]: 'req-456' });
    expect(err.headers?.get(Header.requestId)).toBe('req-456');
    expect(err.headers?.get(Header.serviceErrorCode)).toBe('400');
    const none = await raw('lobby.create', '{}', { [Header.deviceId]: device('a') });
    expect(none.headers?.has(Header.requestId) ?? false).toBe(false);
  });

  it('transport - success replies carry no error headers and the reply object only', async () => {
    const m = await raw('lobby.create', '{}', { [Header.deviceId]: device('a'), [Header.connectionId]: 'sock-1' });
    expect(m.headers?.has(Header.serviceErrorCode) ?? false).toBe(false);
    expect(m.headers?.has(Header.serviceError) ?? false).toBe(false);
    expect(Object.keys(m.json<object>())).toContain('lobby_id');
  });

  it('transport - error replies carry Nats-Service-Error-Code, Nats-Service-Error and the error body', async () => {
    const m = await raw('lobby.get', JSON.stringify({ lobby_id: crypto.randomUUID() }), { [Header.deviceId]: device('a') });
    expect(m.headers?.get(Header.serviceErrorCode)).toBe('404');
    const body = m.json<{ error: { code: string; message: string } }>();
    expect(Object.keys(body)).toEqual(['error']);
    expect(body.error).toEqual({ code: 'lobby_not_found', message: expect.any(String) });
    expect(m.headers?.get(Header.serviceError)).toBe(body.error.message);

    const full = await lobbyWith(h.client, 1, { max_participants: 2 });
    const m2 = await raw('lobby.join', JSON.stringify({ code: full.code }), { [Header.deviceId]: device('late') });
    expect(m2.headers?.get(Header.serviceErrorCode)).toBe('409');
    expect(Object.keys(m2.json<{ error: object }>().error).sort()).toEqual(['code', 'details', 'message']);
  });

  it('transport - an error whose message quotes user input with a line break is still answered', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 2);
    const slot = 'front\r\nX-Injected: 1';
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: guests[0]!, role: 'speaker', role_slot_id: slot });
    const r = await h.client.send('role.assign', admin, { lobby_id: id, target_device_id: guests[1]!, role: 'speaker', role_slot_id: slot });
    expect(r.error).toMatchObject({ code: 'slot_taken', details: { role_slot_id: slot } });
    expect(r.headers?.get(Header.serviceErrorCode)).toBe('409');
    // The header carries the message on one line; the body carries it as it is.
    expect(r.headers?.get(Header.serviceError)).toBe(r.error!.message.replace(/[\r\n]+/g, ' '));
    expect(r.headers?.has('X-Injected') ?? false).toBe(false);
  });
});

describe('body', () => {
  it('transport - an empty body means {}', async () => {
    const lobby = await h.client.call('lobby.create', device('a'), {}, { raw: '' });
    expect(lobby.max_participants).toBe(32);
    const e = expectError(await h.client.send('lobby.get', device('a'), {}, { raw: new Uint8Array(0) }), 'invalid_request');
    expect(e.details?.issues).toHaveLength(1); // {} has neither lobby_id nor code
  });

  it('transport - non-JSON and non-object bodies are invalid_request with details.issues; unknown fields are ignored', async () => {
    for (const body of ['{"code":', 'ABCDEF', '[]', '"ABCDEF"', '12', 'null']) {
      const e = expectError(await h.client.send('lobby.join', device('a'), {}, { raw: body }), 'invalid_request');
      expect(e.details?.issues, body).toEqual([{ path: '', message: expect.any(String) }]);
    }
    const { code } = await lobbyWith(h.client, 0);
    const joined = await h.client.send('lobby.join', device('a'), { code, colour: 'red' });
    expect(joined.ok).toBe(true);
    expect(JSON.stringify(joined.data)).not.toContain('colour');
    const missing = expectError(await h.client.send('lobby.join', device('a'), {}), 'invalid_request');
    expect(missing.details?.issues).toEqual([{ path: 'code', message: expect.any(String) }]);
  });

  it('transport - a body of 256 KiB is served, one byte more is payload_too_large (413)', async () => {
    const { admin, id } = await lobbyWith(h.client, 0);
    const body = (size: number) => {
      const head = JSON.stringify({ lobby_id: id, room: { blob: '' } }).slice(0, -3); // up to `"blob":"`
      return `${head}${'r'.repeat(size - head.length - 3)}"}}`;
    };
    expect(Buffer.byteLength(body(MAX_BODY_BYTES))).toBe(MAX_BODY_BYTES);
    expect(await h.client.call('lobby.room_snapshot', admin, {}, { raw: body(MAX_BODY_BYTES) })).toEqual({ ok: true });
    const r = await h.client.send('lobby.room_snapshot', admin, {}, { raw: body(MAX_BODY_BYTES + 1) });
    const e = expectError(r, 'payload_too_large');
    expect(r.headers?.get(Header.serviceErrorCode)).toBe('413');
    expect(e.details).toMatchObject({ max_bytes: MAX_BODY_BYTES });
    const bs = await settle(tap, h.app, id);
    expect(bs.filter((b) => b.event === 'lobby.room_snapshot')).toHaveLength(1);
  });
});

describe('micro service', () => {
  it('transport - $SRV.INFO.lobby lists every endpoint in queue group lobby on the prefixed subject', async () => {
    const [info] = await ourServices('INFO', 1);
    expect(info).toMatchObject({ type: 'io.nats.micro.v1.info_response', name: SERVICE.name, version: expect.any(String) });
    const subjects = info!.endpoints.map((e) => e.subject).sort();
    expect(subjects).toEqual(subjectNames.map((s) => `${h.env.prefix}${s}`).sort());
    for (const e of info!.endpoints) {
      expect(e.queue_group).toBe(SERVICE.queue);
      expect(e.name).toMatch(/^[A-Za-z0-9_-]+$/);
    }
  });

  it('transport - $SRV.PING.lobby is answered by this service', async () => {
    const [info] = await ourServices('INFO', 1);
    const inbox = createInbox();
    const pongs: Array<{ type: string; name: string; id: string }> = [];
    const sub = h.client.nc.subscribe(inbox, { callback: (_e, m) => void pongs.push(m.json()) });
    h.client.nc.publish(`$SRV.PING.${SERVICE.name}`, '', { reply: inbox });
    const mine = await waitFor(() => pongs.find((p) => p.id === info!.id));
    sub.unsubscribe();
    expect(mine).toMatchObject({ type: 'io.nats.micro.v1.ping_response', name: SERVICE.name });
    const direct = (await h.client.nc.request(`$SRV.PING.${SERVICE.name}.${info!.id}`, '', { timeout: 5_000 })).json();
    expect(direct).toMatchObject({ id: info!.id, name: SERVICE.name });
  });

  it('transport - $SRV.STATS.lobby counts requests per endpoint', async () => {
    const [info] = await ourServices('INFO', 1);
    const before = await stats(info!.id);
    expect(before.type).toBe('io.nats.micro.v1.stats_response');
    const { id } = await lobbyWith(h.client, 0);
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) await h.client.call('lobby.get', device('r'), { lobby_id: id });
    // A refusal (404) is an error returned, as the micro spec counts errors.
    await h.client.send('lobby.get', device('r'), { lobby_id: crypto.randomUUID() });
    const wallNs = (performance.now() - t0) * 1e6;
    const after = await stats(info!.id);
    expect(requestsOf(after, 'lobby_get') - requestsOf(before, 'lobby_get')).toBe(4);
    expect(requestsOf(after, 'lobby_create') - requestsOf(before, 'lobby_create')).toBe(1);
    const get = (s: MicroInfo) => s.endpoints.find((e) => e.name === 'lobby_get')!;
    expect(get(after).num_errors! - get(before).num_errors!).toBe(1);
    expect(get(after).last_error).toMatch(/^lobby_not_found: /);
    // Nanoseconds, as the spec says: the four requests' processing took more than 10 µs each,
    // and less than the wall time they were sent in.
    const processed = get(after).processing_time! - get(before).processing_time!;
    expect(processed).toBeGreaterThan(4 * 10_000);
    expect(processed).toBeLessThan(wallNs);
    expect(get(after).average_processing_time).toBe(Math.round(get(after).processing_time! / get(after).num_requests!));
  });

  it('transport - two replicas share the load and each request is answered exactly once', async () => {
    const second = await startService(h.env.env);
    try {
      const services = await ourServices('INFO', 2);
      expect(new Set(services.map((s) => s.id)).size).toBe(2);
      const before = await Promise.all(services.map((s) => stats(s.id)));

      const n = 40;
      const inbox = createInbox();
      const replies = new Map<string, string[]>();
      const sub = h.client.nc.subscribe(inbox, {
        callback: (_e, m) => {
          const rid = m.headers?.get(Header.requestId) ?? '?';
          replies.set(rid, [...(replies.get(rid) ?? []), m.json<{ lobby_id: string }>().lobby_id]);
        },
      });
      const creator = device('load');
      for (let i = 0; i < n; i++) {
        const hh = natsHeaders();
        hh.set(Header.deviceId, creator);
        hh.set(Header.requestId, `r${i}`);
        h.client.nc.publish(`${h.env.prefix}lobby.create`, '{}', { reply: inbox, headers: hh });
      }
      await waitFor(() => replies.size === n, { message: 'replies of both replicas' });
      sub.unsubscribe();
      expect([...replies.values()].every((ids) => ids.length === 1)).toBe(true);

      const after = await Promise.all(services.map((s) => stats(s.id)));
      const served = after.map((s, i) => requestsOf(s, 'lobby_create') - requestsOf(before[i]!, 'lobby_create'));
      expect(served[0]! + served[1]!).toBe(n);
      expect(Math.min(...served)).toBeGreaterThan(0);
      const rows = await h.app.db.read((em) =>
        em.execute<Array<{ n: string }>>('select count(*) as n from lobbies where creator_device_id = ?', [creator]),
      );
      expect(Number(rows[0]!.n)).toBe(n);
      // Whichever replica wrote an event, the one relay publishes it, once.
      for (const [lobbyId] of replies.values()) {
        expect((await settle(tap, h.app, lobbyId!)).map((b) => b.data.type)).toEqual(['lobby_created']);
      }
    } finally {
      await second.stop();
    }
  });
});
