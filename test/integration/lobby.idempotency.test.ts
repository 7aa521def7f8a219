// Idempotency-Key (CONTRACT section 2): a retry with the same key from the same device returns
// the first reply and changes nothing again, also across a restart of the service.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headers as natsHeaders, type Msg } from '@nats-io/nats-core';
import { Header, type Subject } from '../../subjects/index.js';
import type { App } from '../../src/app.js';
import { device, startHarness, startService } from '../helpers/service.js';
import { Tap, expectError, getLobby, lobbyWith, loggedIds, settle } from '../helpers/lobby.js';

let h: Awaited<ReturnType<typeof startHarness>>;
let tap: Tap;
/** The running service (replaced by the restart test). */
let app: App;
beforeAll(async () => {
  h = await startHarness();
  app = h.app;
  tap = await Tap.open(h.client);
});
afterAll(async () => {
  tap?.close();
  if (app !== h?.app) await app?.stop();
  await h?.stop();
});

/** A request with an Idempotency-Key; the reply as it is on the wire. */
function keyed(subject: Subject, deviceId: string, key: string, data: unknown): Promise<Msg> {
  const hh = natsHeaders();
  hh.set(Header.deviceId, deviceId);
  hh.set(Header.idempotencyKey, key);
  return h.client.nc.request(`${h.env.prefix}${subject}`, JSON.stringify(data), { headers: hh, timeout: 10_000 });
}
const bytes = (m: Msg) => Buffer.from(m.data);
const errorCode = (m: Msg) => m.headers?.get(Header.serviceErrorCode) || undefined;

async function lobbiesOf(creator: string): Promise<number> {
  const rows = await app.db.read((em) =>
    em.execute<Array<{ n: string }>>('select count(*) as n from lobbies where creator_device_id = ?', [creator]),
  );
  return Number(rows[0]!.n);
}

describe('idempotency', () => {
  it('idempotency - a retry returns the first reply byte-for-byte and creates nothing again', async () => {
    const admin = device('admin');
    const first = await keyed('lobby.create', admin, 'create-1', { max_participants: 8 });
    const again = await keyed('lobby.create', admin, 'create-1', { max_participants: 8 });
    expect(errorCode(first)).toBeUndefined();
    expect(bytes(again).equals(bytes(first))).toBe(true);
    expect(errorCode(again)).toBeUndefined();
    expect(await lobbiesOf(admin)).toBe(1);
    const { lobby_id } = first.json<{ lobby_id: string }>();
    expect((await settle(tap, app, lobby_id)).map((b) => b.data.type)).toEqual(['lobby_created']);
    // Without a key, the same body creates another lobby.
    await h.client.call('lobby.create', admin, { max_participants: 8 });
    expect(await lobbiesOf(admin)).toBe(2);
  });

  it('idempotency - a retried join returns the first reply and does not rejoin after a leave', async () => {
    const { code, id } = await lobbyWith(h.client, 0);
    const guest = device('guest');
    const first = await keyed('lobby.join', guest, 'join-1', { code });
    await h.client.call('lobby.leave', guest, { lobby_id: id });
    const events = await loggedIds(app, id);
    const retry = await keyed('lobby.join', guest, 'join-1', { code });
    expect(bytes(retry).equals(bytes(first))).toBe(true);
    // Still gone: a device that left is not listed.
    expect((await getLobby(h.client, id)).participants.map((p) => p.device_id)).not.toContain(guest);
    expect(await loggedIds(app, id)).toEqual(events);
    await settle(tap, app, id);
  });

  it('idempotency - keys belong to one device: another device with the same key is a new request', async () => {
    const a = device('a');
    const b = device('b');
    const ra = await keyed('lobby.create', a, 'shared-key', {});
    const rb = await keyed('lobby.create', b, 'shared-key', {});
    expect(ra.json<{ lobby_id: string }>().lobby_id).not.toBe(rb.json<{ lobby_id: string }>().lobby_id);
    expect(rb.json<{ admin_device_id: string }>().admin_device_id).toBe(b);
  });

  it('idempotency - a key reused for another body or subject is invalid_request', async () => {
    const { admin, id } = await lobbyWith(h.client, 0);
    await keyed('lobby.step_update', admin, 'step-1', { lobby_id: id, step_index: 1 });
    const other = await keyed('lobby.step_update', admin, 'step-1', { lobby_id: id, step_index: 2 });
    expect(errorCode(other)).toBe('400');
    expect(other.json<{ error: { code: string } }>().error.code).toBe('invalid_request');
    expect(errorCode(await keyed('lobby.profile_update', admin, 'step-1', { lobby_id: id, profile_id: 'p' }))).toBe('400');
    expect((await getLobby(h.client, id)).step_index).toBe(1);
    expect((await getLobby(h.client, id)).profile_id).toBeNull();
    expect((await settle(tap, app, id)).filter((b) => b.event === 'lobby.step_update')).toHaveLength(1);
  });

  it('idempotency - a stored refusal is replayed even after the cause is gone', async () => {
    const { guests, code, id } = await lobbyWith(h.client, 1, { max_participants: 2 });
    const late = device('late');
    const first = await keyed('lobby.join', late, 'join-full', { code });
    expect(errorCode(first)).toBe('409');
    expect(first.json<{ error: { code: string } }>().error.code).toBe('lobby_full');
    await h.client.call('lobby.leave', guests[0]!, { lobby_id: id }); // now there is room
    const retry = await keyed('lobby.join', late, 'join-full', { code });
    expect(bytes(retry).equals(bytes(first))).toBe(true);
    expect(errorCode(retry)).toBe('409');
    expect(retry.headers?.get(Header.serviceError)).toBe(first.headers?.get(Header.serviceError));
    expect((await getLobby(h.client, id)).participants.map((p) => p.device_id)).not.toContain(late);
    // A fresh key is a new request, and succeeds.
    expect(errorCode(await keyed('lobby.join', late, 'join-full-2', { code }))).toBeUndefined();
  });

  it('idempotency - validation errors are not stored: the corrected request may use the key', async () => {
    const { code } = await lobbyWith(h.client, 0);
    const guest = device('guest');
    const bad = await keyed('lobby.join', guest, 'fix-me', { code: 12345 });
    expect(errorCode(bad)).toBe('400');
    const good = await keyed('lobby.join', guest, 'fix-me', { code });
    expect(errorCode(good)).toBeUndefined();
  });

  it('idempotency - concurrent identical keyed requests produce one effect and one reply', async () => {
    const admin = device('admin');
    const creates = await Promise.all(Array.from({ length: 8 }, () => keyed('lobby.create', admin, 'race-create', {})));
    for (const r of creates) expect(bytes(r).equals(bytes(creates[0]!))).toBe(true);
    expect(await lobbiesOf(admin)).toBe(1);

    const { code, id } = await lobbyWith(h.client, 0);
    const guest = device('guest');
    const joins = await Promise.all(Array.from({ length: 6 }, () => keyed('lobby.join', guest, 'race-join', { code })));
    for (const r of joins) {
      expect(errorCode(r)).toBeUndefined();
      expect(bytes(r).equals(bytes(joins[0]!))).toBe(true);
    }
    const bs = await settle(tap, app, id);
    expect(bs.filter((b) => b.data.type === 'participant_joined')).toHaveLength(1);
  });

  it('idempotency - a retry after a service restart returns the first reply and changes nothing', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 1);
    const kick = { lobby_id: id, target_device_id: guests[0]! };
    const first = await keyed('lobby.kick', admin, 'kick-1', kick);
    expect(errorCode(first)).toBeUndefined();
    const nobody = { lobby_id: id, target_device_id: device('nobody') };
    const refused = await keyed('lobby.kick', admin, 'kick-2', nobody);
    expect(errorCode(refused)).toBe('404');
    const events = await loggedIds(app, id);

    await app.stop();
    app = await startService(h.env.env);

    const retry = await keyed('lobby.kick', admin, 'kick-1', kick);
    expect(bytes(retry).equals(bytes(first))).toBe(true);
    expect(errorCode(retry)).toBeUndefined();
    const retryRefused = await keyed('lobby.kick', admin, 'kick-2', nobody);
    expect(bytes(retryRefused).equals(bytes(refused))).toBe(true);
    expect(await loggedIds(app, id)).toEqual(events);
    // Without the key the kick is a new request: the target is no longer a participant.
    expectError(await h.client.send('lobby.kick', admin, kick), 'participant_not_found');
    await settle(tap, app, id);
  });
});
