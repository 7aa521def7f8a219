// lobby.leave, lobby.get, lobby.start and lobby.close end to end over NATS.
import { describe, expect, it } from 'vitest';
import { Lobby } from '../../subjects/index.js';
import { device } from '../helpers/service.js';
import { Tap, withTappedHarness, type Harness, expectError, expectTargets, getLobby, lobbyWith, lobbyWithSession, settle } from '../helpers/lobby.js';

let h: Harness;
let tap: Tap;
withTappedHarness((started) => ({ h, tap } = started));

describe('lobby.leave', () => {
  it('lobby - leave by a non-member is a no-op {ok: true}', async () => {
    const { id } = await lobbyWith(h.client, 1);
    expect(await h.client.call('lobby.leave', device('stranger'), { lobby_id: id })).toEqual({ ok: true });
    const bs = await settle(tap, h.app, id);
    expect(bs.map((b) => b.data.type)).toEqual(['lobby_created', 'participant_joined']);
  });

  it('lobby - leave of an unknown lobby is lobby_not_found', async () => {
    expectError(await h.client.send('lobby.leave', device('x'), { lobby_id: crypto.randomUUID() }), 'lobby_not_found');
    expectError(await h.client.send('lobby.leave', device('x'), { lobby_id: 'not-a-uuid' }), 'lobby_not_found');
  });

  it('lobby - a guest leaving broadcasts participant_left to the rest and to itself', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 2);
    const [g1, g2] = guests as [string, string];
    expect(await h.client.call('lobby.leave', g1, { lobby_id: id })).toEqual({ ok: true });
    // Leaving twice changes nothing more.
    expect(await h.client.call('lobby.leave', g1, { lobby_id: id })).toEqual({ ok: true });
    const bs = await settle(tap, h.app, id);
    expect(bs.map((b) => b.data.type)).toEqual(['lobby_created', 'participant_joined', 'participant_joined', 'participant_left']);
    const left = bs[3]!;
    expect(left.data).toMatchObject({ type: 'participant_left', lobby_id: id, device_id: g1 });
    expectTargets(left, [admin, g2, g1]);
    const lobby = left.data.lobby as Lobby;
    expect(lobby.admin_device_id).toBe(admin);
    // The lobby after the change lists the devices still joined; the change names who left.
    expect(lobby.participants.map((p) => p.device_id)).toEqual([admin, g2]);
    expect(await getLobby(h.client, id)).toEqual(lobby);
  });

  it('lobby - the admin leaving hands over to the earliest-joined remaining with admin_changed', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 3);
    const [g1, g2, g3] = guests as [string, string, string];
    await h.client.call('lobby.leave', g1, { lobby_id: id }); // g1 is gone: g2 is next in line
    await h.client.call('lobby.leave', admin, { lobby_id: id });
    const bs = await settle(tap, h.app, id);
    const [left, changed] = bs.slice(-2) as [(typeof bs)[0], (typeof bs)[0]];
    expect(left.data).toMatchObject({ type: 'participant_left', device_id: admin });
    expectTargets(left, [g2, g3, admin]);
    expect(changed.data).toMatchObject({ type: 'admin_changed', admin_device_id: g2, previous_admin_device_id: admin });
    expectTargets(changed, [g2, g3]);
    expect((changed.data.lobby as Lobby).admin_device_id).toBe(g2);
    expect((await getLobby(h.client, id)).admin_device_id).toBe(g2);
    expect((await getLobby(h.client, id)).creator_device_id).toBe(admin);
    // The new admin has the rights, the old one not.
    await h.client.call('lobby.step_update', g2, { lobby_id: id, step_index: 1 });
    expectError(await h.client.send('lobby.step_update', admin, { lobby_id: id, step_index: 2 }), 'forbidden');
  });

  it('lobby - a non-admin leaving keeps the admin and sends no admin_changed', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 2);
    await h.client.call('lobby.leave', guests[1]!, { lobby_id: id });
    const bs = await settle(tap, h.app, id);
    expect(bs.some((b) => b.data.type === 'admin_changed')).toBe(false);
    expect((await getLobby(h.client, id)).admin_device_id).toBe(admin);
  });

  it('lobby - the last one out closes the lobby with lobby_closed', async () => {
    const { admin, guests, code, id } = await lobbyWith(h.client, 1);
    await h.client.call('lobby.leave', admin, { lobby_id: id });
    await h.client.call('lobby.leave', guests[0]!, { lobby_id: id });
    const bs = await settle(tap, h.app, id);
    expect(bs.map((b) => b.data.type)).toEqual([
      'lobby_created',
      'participant_joined',
      'participant_left',
      'admin_changed',
      'participant_left',
      'lobby_closed',
    ]);
    const closed = bs.at(-1)!;
    expectTargets(closed, [guests[0]!]);
    expect((closed.data.lobby as Lobby).state).toBe('closed');
    expect(closed.data.reason).toEqual(expect.any(String));
    expect((await getLobby(h.client, id)).state).toBe('closed');
    // Its code no longer finds it.
    expectError(await h.client.send('lobby.get', device('r'), { code }), 'lobby_not_found');
    expectError(await h.client.send('lobby.join', device('late'), { code }), 'lobby_not_found');
    // Leaving a closed lobby is a no-op.
    expect(await h.client.call('lobby.leave', admin, { lobby_id: id })).toEqual({ ok: true });
    expect((await settle(tap, h.app, id)).length).toBe(bs.length);
  });

  it('lobby - a closed lobby frees its code for a new lobby', async () => {
    const first = await lobbyWith(h.client, 0);
    await h.client.call('lobby.close', first.admin, { lobby_id: first.id });
    // Codes are random: give a new lobby the freed code directly (the open-code index must allow it).
    const second = await lobbyWith(h.client, 0);
    await h.app.db.transaction((em) => em.execute('update lobbies set code = ? where id = ?', [first.code, second.id]));
    const joined = await h.client.call('lobby.join', device('guest'), { code: first.code.toLowerCase() });
    expect(joined.lobby_id).toBe(second.id);
    expect((await h.client.call('lobby.get', device('r'), { code: first.code })).lobby_id).toBe(second.id);
    // While the second is open the code is taken: a third lobby cannot have it too.
    const third = await lobbyWith(h.client, 0);
    await expect(
      h.app.db.transaction((em) => em.execute('update lobbies set code = ? where id = ?', [first.code, third.id])),
    ).rejects.toThrow(/lobbies_open_code/);
  });
});

describe('lobby.get', () => {
  it('lobby - get by id and by code (any case, spaces) answers the same lobby', async () => {
    const { guests, code, id } = await lobbyWith(h.client, 1);
    const byId = await h.client.call('lobby.get', device('stranger'), { lobby_id: id });
    const byCode = await h.client.call('lobby.get', device('stranger'), { code: ` ${code.toLowerCase()} ` });
    expect(Lobby.parse(byId)).toEqual(byCode);
    expect(byId.participants.map((p) => p.device_id)).toContain(guests[0]);
    const bs = await settle(tap, h.app, id);
    expect(bs).toHaveLength(2); // reads broadcast nothing
  });

  it('lobby - get with neither or both of lobby_id and code is invalid_request', async () => {
    const { code, id } = await lobbyWith(h.client, 0);
    for (const data of [{}, { lobby_id: id, code }, { lobby_id: null, code: null }]) {
      const e = expectError(await h.client.send('lobby.get', device('r'), data), 'invalid_request');
      expect(e.details?.issues).toEqual([expect.objectContaining({ path: expect.any(String), message: expect.any(String) })]);
    }
    // An unknown field is ignored; null for the other one means absent.
    expect((await h.client.send('lobby.get', device('r'), { lobby_id: id, extra: 1 })).ok).toBe(true);
    expect((await h.client.send('lobby.get', device('r'), { lobby_id: null, code: code.toLowerCase() })).ok).toBe(true);
  });

  it('lobby - get of an unknown id or code is lobby_not_found', async () => {
    for (const data of [{ lobby_id: crypto.randomUUID() }, { lobby_id: 'nope' }, { code: 'ZZZZZ9' }, { code: 'zz' }]) {
      expectError(await h.client.send('lobby.get', device('r'), data), 'lobby_not_found');
    }
  });
});

describe('lobby.start', () => {
  it('lobby - start by the admin broadcasts measurement_started and sets the state', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 1);
    expect(await h.client.call('lobby.start', admin, { lobby_id: id })).toEqual({ ok: true, state: 'measurement_running' });
    const b = (await settle(tap, h.app, id)).at(-1)!;
    expect(b.data).toMatchObject({ type: 'measurement_started', lobby_id: id, device_id: admin });
    expect((b.data.lobby as Lobby).state).toBe('measurement_running');
    expectTargets(b, [admin, guests[0]!]);
  });

  it('lobby - start by anyone but the admin is forbidden', async () => {
    const { guests, id } = await lobbyWith(h.client, 1);
    expectError(await h.client.send('lobby.start', guests[0]!, { lobby_id: id }), 'forbidden');
    expectError(await h.client.send('lobby.start', device('stranger'), { lobby_id: id }), 'forbidden');
    expect((await getLobby(h.client, id)).state).toBe('open');
    expect(await settle(tap, h.app, id)).toHaveLength(2);
  });

  it('lobby - start of a lobby that is not open is lobby_not_open with details.state', async () => {
    const { admin, id } = await lobbyWith(h.client, 1);
    await h.client.call('lobby.start', admin, { lobby_id: id });
    const e = expectError(await h.client.send('lobby.start', admin, { lobby_id: id }), 'lobby_not_open');
    expect(e.details).toEqual({ state: 'measurement_running' });
    await h.client.call('lobby.close', admin, { lobby_id: id });
    expect(expectError(await h.client.send('lobby.start', admin, { lobby_id: id }), 'lobby_not_open').details).toEqual({ state: 'closed' });
    expectError(await h.client.send('lobby.start', admin, { lobby_id: crypto.randomUUID() }), 'lobby_not_found');
  });
});

describe('lobby.close', () => {
  it('lobby - close by the admin broadcasts lobby_closed once and is idempotent', async () => {
    const { admin, guests, code, id } = await lobbyWith(h.client, 2);
    expect(await h.client.call('lobby.close', admin, { lobby_id: id })).toEqual({ ok: true, state: 'closed' });
    expect(await h.client.call('lobby.close', admin, { lobby_id: id })).toEqual({ ok: true, state: 'closed' });
    const bs = await settle(tap, h.app, id);
    const closes = bs.filter((b) => b.data.type === 'lobby_closed');
    expect(closes).toHaveLength(1);
    expect(bs.at(-1)).toBe(closes[0]);
    expectTargets(closes[0]!, [admin, ...guests]);
    expect((closes[0]!.data.lobby as Lobby).state).toBe('closed');
    // Joining afterwards fails; the lobby is still readable by id.
    const e = await h.client.send('lobby.join', device('late'), { code });
    expect(e.ok).toBe(false);
    expect((await getLobby(h.client, id)).state).toBe('closed');
    // Nothing else can change it any more.
    expectError(await h.client.send('lobby.step_update', admin, { lobby_id: id, step_index: 1 }), 'lobby_not_open');
    expectError(await h.client.send('role.assign', admin, { lobby_id: id, target_device_id: guests[0]!, role: 'speaker' }), 'lobby_not_open');
  });

  it('lobby - close by anyone but the admin is forbidden', async () => {
    const { guests, id } = await lobbyWith(h.client, 1);
    expectError(await h.client.send('lobby.close', guests[0]!, { lobby_id: id }), 'forbidden');
    expect((await getLobby(h.client, id)).state).toBe('open');
    expectError(await h.client.send('lobby.close', device('x'), { lobby_id: crypto.randomUUID() }), 'lobby_not_found');
  });

  it('lobby - close cancels the active session first, then lobby_closed', async () => {
    const { admin, speaker, mic, bystander, id, sessionId } = await lobbyWithSession(h.client);
    expect((await getLobby(h.client, id)).active_session_id).toBe(sessionId);
    await h.client.call('lobby.close', admin, { lobby_id: id });
    const bs = await settle(tap, h.app, id);
    const cancelled = bs.findIndex((b) => b.event === 'measurement.session_cancelled');
    const closed = bs.findIndex((b) => b.data.type === 'lobby_closed');
    expect(cancelled).toBeGreaterThan(-1);
    expect(closed).toBe(bs.length - 1);
    expect(cancelled).toBeLessThan(closed);
    expect(bs[cancelled]!.session_id).toBe(sessionId);
    expectTargets(bs[closed]!, [admin, speaker, mic, bystander]);
    expect(bs[closed]!.data.lobby).toMatchObject({ state: 'closed', active_session_id: null });
    expect(await h.client.call('measurement.session_status', admin, { session_id: sessionId })).toMatchObject({ state: 'cancelled' });
  });

  it('lobby - close of a running lobby closes it', async () => {
    const { admin, id } = await lobbyWith(h.client, 1);
    await h.client.call('lobby.start', admin, { lobby_id: id });
    await h.client.call('lobby.close', admin, { lobby_id: id });
    const bs = await settle(tap, h.app, id);
    expect(bs.map((b) => b.data.type).slice(-2)).toEqual(['measurement_started', 'lobby_closed']);
  });
});
