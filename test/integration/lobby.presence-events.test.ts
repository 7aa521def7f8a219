// lobby.presence and lobby.events end to end over NATS.
import { describe, expect, it } from 'vitest';
import { Lobby } from '../../subjects/index.js';
import { device } from '../helpers/service.js';
import { Tap, withTappedHarness, type Harness, expectError, expectTargets, getLobby, lobbyWith, loggedIds, settle } from '../helpers/lobby.js';

let h: Harness;
let tap: Tap;
withTappedHarness((started) => ({ h, tap } = started));

const connectedOf = async (lobbyId: string, d: string) =>
  (await getLobby(h.client, lobbyId)).participants.find((p) => p.device_id === d)?.connected;

describe('lobby.presence', () => {
  it('lobby - presence changes the connected flag in every joined lobby and broadcasts it there', async () => {
    const phone = device('phone');
    const a = await lobbyWith(h.client, 1);
    const b = await lobbyWith(h.client, 0);
    const left = await lobbyWith(h.client, 0);
    const closed = await lobbyWith(h.client, 0);
    for (const l of [a, b, left, closed]) await h.client.call('lobby.join', phone, { code: l.code });
    await h.client.call('lobby.leave', phone, { lobby_id: left.id });
    await h.client.call('lobby.close', closed.admin, { lobby_id: closed.id });

    const down = await h.client.call('lobby.presence', phone, { connected: false });
    expect(down.ok).toBe(true);
    expect([...down.lobbies].sort()).toEqual([a.id, b.id].sort());
    for (const l of [a, b]) {
      const ev = (await settle(tap, h.app, l.id)).at(-1)!;
      expect(ev.data).toMatchObject({ type: 'presence_changed', lobby_id: l.id, device_id: phone, connected: false });
      expectTargets(ev, [l.admin, ...l.guests, phone]);
      expect((ev.data.lobby as Lobby).participants.find((p) => p.device_id === phone)?.connected).toBe(false);
      expect(await connectedOf(l.id, phone)).toBe(false);
    }
    for (const l of [left, closed]) {
      const evs = await settle(tap, h.app, l.id);
      expect(evs.some((e) => e.data.type === 'presence_changed')).toBe(false);
    }
    // Others are untouched.
    expect(await connectedOf(a.id, a.admin)).toBe(true);

    const up = await h.client.call('lobby.presence', phone, { connected: true });
    expect([...up.lobbies].sort()).toEqual([a.id, b.id].sort());
    for (const l of [a, b]) {
      expect((await settle(tap, h.app, l.id)).at(-1)!.data).toMatchObject({ type: 'presence_changed', connected: true });
      expect(await connectedOf(l.id, phone)).toBe(true);
    }
  });

  it('lobby - presence that does not change the flag broadcasts nothing but still lists the lobbies', async () => {
    const { guests, id } = await lobbyWith(h.client, 1);
    const g = guests[0]!;
    const before = await settle(tap, h.app, id);
    expect(await h.client.call('lobby.presence', g, { connected: true })).toEqual({ ok: true, lobbies: [id] });
    expect(await settle(tap, h.app, id)).toHaveLength(before.length);
    await h.client.call('lobby.presence', g, { connected: false });
    await h.client.call('lobby.presence', g, { connected: false });
    const after = await settle(tap, h.app, id);
    expect(after.filter((e) => e.data.type === 'presence_changed')).toHaveLength(1);
  });

  it('lobby - presence of a device in no lobby answers an empty list', async () => {
    expect(await h.client.call('lobby.presence', device('idle'), { connected: false })).toEqual({ ok: true, lobbies: [] });
  });

  it('lobby - presence needs a boolean connected', async () => {
    for (const data of [{}, { connected: 'yes' }, { connected: 1 }, { connected: null }]) {
      expectError(await h.client.send('lobby.presence', device('p'), data), 'invalid_request');
    }
  });
});

describe('lobby.events', () => {
  it('lobby - events lists the log in strictly increasing ids, as broadcast', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 2);
    await h.client.call('lobby.step_update', admin, { lobby_id: id, step_index: 1 });
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: guests[0]!, role: 'speaker' });
    await h.client.call('lobby.leave', guests[1]!, { lobby_id: id });
    const broadcasts = await settle(tap, h.app, id);

    const page = await h.client.call('lobby.events', guests[0]!, { lobby_id: id });
    expect(page.lobby_id).toBe(id);
    expect(page.events.map((e) => e.id)).toEqual(await loggedIds(h.app, id));
    expect(page.events.map((e) => ({ id: e.id, type: e.type, payload: e.payload, created_at: e.created_at }))).toEqual(
      broadcasts.map((b) => ({ id: b.id, type: b.event, payload: b.data, created_at: b.created_at })),
    );
    const ids = page.events.map((e) => e.id);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]!);
  });

  it('lobby - events pages with after_id and limit', async () => {
    const { admin, id } = await lobbyWith(h.client, 0);
    for (let i = 0; i < 6; i++) await h.client.call('lobby.step_update', admin, { lobby_id: id, step_index: i });
    const all = (await h.client.call('lobby.events', admin, { lobby_id: id })).events.map((e) => e.id);
    expect(all).toHaveLength(7);

    expect((await h.client.call('lobby.events', admin, { lobby_id: id, limit: 2 })).events.map((e) => e.id)).toEqual(all.slice(0, 2));
    expect((await h.client.call('lobby.events', admin, { lobby_id: id, after_id: all[2]! })).events.map((e) => e.id)).toEqual(all.slice(3));
    expect(
      (await h.client.call('lobby.events', admin, { lobby_id: id, after_id: all[2]!, limit: 2 })).events.map((e) => e.id),
    ).toEqual(all.slice(3, 5));
    expect((await h.client.call('lobby.events', admin, { lobby_id: id, after_id: all.at(-1)! })).events).toEqual([]);
    expect((await h.client.call('lobby.events', admin, { lobby_id: id, after_id: 0 })).events.map((e) => e.id)).toEqual(all);

    // Walking page by page gives every event once.
    const walked: number[] = [];
    for (let after = 0; ; ) {
      const p = await h.client.call('lobby.events', admin, { lobby_id: id, after_id: after, limit: 3 });
      if (p.events.length === 0) break;
      walked.push(...p.events.map((e) => e.id));
      after = p.events.at(-1)!.id;
    }
    expect(walked).toEqual(all);
  });

  it('lobby - events answers 100 by default and at most 1000', async () => {
    const { admin, id } = await lobbyWith(h.client, 0);
    for (let i = 0; i < 105; i++) await h.client.call('lobby.step_update', admin, { lobby_id: id, step_index: i });
    expect((await h.client.call('lobby.events', admin, { lobby_id: id })).events).toHaveLength(100);
    expect((await h.client.call('lobby.events', admin, { lobby_id: id, limit: 1000 })).events).toHaveLength(106);
    for (const limit of [0, 1001, 2.5]) {
      const e = expectError(await h.client.send('lobby.events', admin, { lobby_id: id, limit }), 'invalid_request');
      expect(e.details?.issues).toEqual([{ path: 'limit', message: expect.any(String) }]);
    }
    expectError(await h.client.send('lobby.events', admin, { lobby_id: id, after_id: -1 }), 'invalid_request');
    await settle(tap, h.app, id);
  });

  it('lobby - events of a lobby with a large room are answered, page by page', async () => {
    const { admin, code, id } = await lobbyWith(h.client, 0);
    // Every lobby.updated carries the whole lobby, room included: ~200 KB per event here.
    await h.client.call('lobby.room_snapshot', admin, { lobby_id: id, room: { mesh: 'm'.repeat(200_000) } });
    for (let i = 0; i < 8; i++) await h.client.call('lobby.join', device(`g${i}`), { code });
    const ids = await loggedIds(h.app, id);
    const walked: number[] = [];
    for (let after = 0; ; ) {
      const r = await h.client.send('lobby.events', admin, { lobby_id: id, after_id: after }, { timeoutMs: 5_000 });
      expect(r.error).toBeUndefined();
      if (r.data.events.length === 0) break;
      walked.push(...r.data.events.map((e) => e.id));
      after = r.data.events.at(-1)!.id;
    }
    expect(walked).toEqual(ids);
    await settle(tap, h.app, id);
  });

  it('lobby - events is for members: joined or left, not strangers', async () => {
    const { guests, id } = await lobbyWith(h.client, 1);
    expectError(await h.client.send('lobby.events', device('stranger'), { lobby_id: id }), 'forbidden');
    await h.client.call('lobby.leave', guests[0]!, { lobby_id: id });
    expect((await h.client.call('lobby.events', guests[0]!, { lobby_id: id })).events.length).toBeGreaterThan(0);
    expectError(await h.client.send('lobby.events', device('x'), { lobby_id: crypto.randomUUID() }), 'lobby_not_found');
  });
});
