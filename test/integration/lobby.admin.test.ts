// The admin's commands: lobby.kick, lobby.transfer_admin, lobby.room_snapshot,
// lobby.step_update, lobby.profile_update and role.assign, end to end over NATS.
import { describe, expect, it } from 'vitest';
import { Lobby } from '../../subjects/index.js';
import { device } from '../helpers/service.js';
import { Tap, withTappedHarness, type Harness, expectError, expectTargets, getLobby, lobbyWith, lobbyWithSession, settle } from '../helpers/lobby.js';

let h: Harness;
let tap: Tap;
withTappedHarness((started) => ({ h, tap } = started));

const last = async (id: string) => (await settle(tap, h.app, id)).at(-1)!;

describe('lobby.kick', () => {
  it('lobby - kick tells the kicked device too and removes it from the participants', async () => {
    const { admin, guests, code, id } = await lobbyWith(h.client, 2);
    const [g1, g2] = guests as [string, string];
    expect(await h.client.call('lobby.kick', admin, { lobby_id: id, target_device_id: g1 })).toEqual({ ok: true });
    const b = await last(id);
    expect(b.data).toMatchObject({ type: 'participant_kicked', lobby_id: id, target_device_id: g1 });
    expectTargets(b, [admin, g2, g1]);
    expect((b.data.lobby as Lobby).participants.map((p) => p.device_id)).toEqual([admin, g2]);
    expect((await getLobby(h.client, id)).participants.map((p) => p.device_id)).toEqual([admin, g2]);
    // Kicked for good: no rejoin, no event log, no second kick.
    expectError(await h.client.send('lobby.join', g1, { code }), 'forbidden');
    expectError(await h.client.send('lobby.events', g1, { lobby_id: id }), 'forbidden');
    expectError(await h.client.send('lobby.kick', admin, { lobby_id: id, target_device_id: g1 }), 'participant_not_found');
  });

  it('lobby - kick is admin only and needs a joined target', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 2);
    expectError(await h.client.send('lobby.kick', guests[0]!, { lobby_id: id, target_device_id: guests[1]! }), 'forbidden');
    expectError(await h.client.send('lobby.kick', admin, { lobby_id: id, target_device_id: device('stranger') }), 'participant_not_found');
    await h.client.call('lobby.leave', guests[1]!, { lobby_id: id });
    expectError(await h.client.send('lobby.kick', admin, { lobby_id: id, target_device_id: guests[1]! }), 'participant_not_found');
    expectError(await h.client.send('lobby.kick', admin, { lobby_id: id, target_device_id: admin }), 'invalid_request');
    expectError(await h.client.send('lobby.kick', admin, { lobby_id: crypto.randomUUID(), target_device_id: admin }), 'lobby_not_found');
    const bs = await settle(tap, h.app, id);
    expect(bs.some((b) => b.data.type === 'participant_kicked')).toBe(false);
  });
});

describe('session_active', () => {
  it('lobby - a device listed in the unfinished session cannot be kicked or re-roled', async () => {
    const { admin, speaker, mic, bystander, id, sessionId } = await lobbyWithSession(h.client);
    for (const target of [speaker, mic]) {
      const k = expectError(await h.client.send('lobby.kick', admin, { lobby_id: id, target_device_id: target }), 'session_active');
      expect(k.details).toMatchObject({ session_id: sessionId, device_id: target });
      expectError(await h.client.send('role.assign', admin, { lobby_id: id, target_device_id: target, role: 'none' }), 'session_active');
    }
    // A device the session does not list is fair game.
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: bystander, role: 'microphone', role_slot_id: 'M2' });
    await h.client.call('lobby.kick', admin, { lobby_id: id, target_device_id: bystander });
    // Once the session is over, the rule no longer applies.
    await h.client.call('measurement.cancel_session', admin, { session_id: sessionId });
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: speaker, role: 'none' });
    await h.client.call('lobby.kick', admin, { lobby_id: id, target_device_id: mic });
    const lobby = await getLobby(h.client, id);
    expect(lobby).toMatchObject({ state: 'open', active_session_id: null });
    expect(lobby.participants.map((p) => p.device_id)).toEqual([admin, speaker]);
    await settle(tap, h.app, id);
  });
});

describe('lobby.transfer_admin', () => {
  it('lobby - transfer_admin hands the admin right over with admin_changed', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 2);
    const [g1, g2] = guests as [string, string];
    expect(await h.client.call('lobby.transfer_admin', admin, { lobby_id: id, target_device_id: g2 })).toEqual({
      ok: true,
      admin_device_id: g2,
    });
    const b = await last(id);
    expect(b.data).toMatchObject({ type: 'admin_changed', admin_device_id: g2, previous_admin_device_id: admin });
    expectTargets(b, [admin, g1, g2]);
    const lobby = await getLobby(h.client, id);
    expect(lobby).toMatchObject({ admin_device_id: g2, creator_device_id: admin });
    expectError(await h.client.send('lobby.transfer_admin', admin, { lobby_id: id, target_device_id: g1 }), 'forbidden');
    // The new admin leaving hands over to the earliest-joined remaining: the creator.
    await h.client.call('lobby.leave', g2, { lobby_id: id });
    expect((await getLobby(h.client, id)).admin_device_id).toBe(admin);
  });

  it('lobby - transfer_admin to oneself changes nothing; to a non-member is participant_not_found', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 1);
    expect(await h.client.call('lobby.transfer_admin', admin, { lobby_id: id, target_device_id: admin })).toEqual({
      ok: true,
      admin_device_id: admin,
    });
    expectError(await h.client.send('lobby.transfer_admin', admin, { lobby_id: id, target_device_id: device('x') }), 'participant_not_found');
    expectError(await h.client.send('lobby.transfer_admin', guests[0]!, { lobby_id: id, target_device_id: guests[0]! }), 'forbidden');
    expect((await settle(tap, h.app, id)).some((b) => b.data.type === 'admin_changed')).toBe(false);
  });
});

describe('shared state', () => {
  it('lobby - room_snapshot goes to the joined others and is kept for late joiners', async () => {
    const { admin, guests, code, id } = await lobbyWith(h.client, 2);
    const [g1, g2] = guests as [string, string];
    await h.client.call('lobby.leave', g2, { lobby_id: id });
    const room = { name: 'Studio B', walls: [{ x: 0, y: 0 }, { x: 4.5, y: 3 }], nested: { ok: true, n: null } };
    expect(await h.client.call('lobby.room_snapshot', admin, { lobby_id: id, room })).toEqual({ ok: true });
    const b = await last(id);
    expect(b.event).toBe('lobby.room_snapshot');
    expect(b.data).toEqual({ lobby_id: id, room, source_device_id: admin, shared_at: expect.any(String) });
    expect(new Date(b.data.shared_at as string).toISOString()).toBe(b.data.shared_at);
    expectTargets(b, [g1]); // not the sender, not the one who left
    const late = await h.client.call('lobby.join', device('late'), { code });
    expect(late.room).toEqual(room);
    // The latest snapshot wins.
    await h.client.call('lobby.room_snapshot', admin, { lobby_id: id, room: { name: 'v2' } });
    expect((await getLobby(h.client, id)).room).toEqual({ name: 'v2' });
    expectError(await h.client.send('lobby.room_snapshot', g1, { lobby_id: id, room }), 'forbidden');
    for (const bad of ['x', [1], null, undefined]) {
      expectError(await h.client.send('lobby.room_snapshot', admin, { lobby_id: id, room: bad }), 'invalid_request');
    }
  });

  it('lobby - step_update goes to the others and is kept in step_index', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 2);
    expect(await h.client.call('lobby.step_update', admin, { lobby_id: id, step_index: 3 })).toEqual({ ok: true, step_index: 3 });
    const b = await last(id);
    expect(b.event).toBe('lobby.step_update');
    expect(b.data).toEqual({ lobby_id: id, step_index: 3, source_device_id: admin });
    expectTargets(b, guests);
    expect((await getLobby(h.client, id)).step_index).toBe(3);
    await h.client.call('lobby.step_update', admin, { lobby_id: id, step_index: 0 });
    expect((await getLobby(h.client, id)).step_index).toBe(0);
    for (const bad of [-1, 1.5, '2']) {
      const e = expectError(await h.client.send('lobby.step_update', admin, { lobby_id: id, step_index: bad }), 'invalid_request');
      expect(e.details?.issues).toEqual([{ path: 'step_index', message: expect.any(String) }]);
    }
    expectError(await h.client.send('lobby.step_update', guests[0]!, { lobby_id: id, step_index: 9 }), 'forbidden');
    expect((await getLobby(h.client, id)).step_index).toBe(0);
  });

  it('lobby - profile_update goes to the others and is kept in profile_id', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 1);
    expect(await h.client.call('lobby.profile_update', admin, { lobby_id: id, profile_id: 'studio-v2' })).toEqual({
      ok: true,
      profile_id: 'studio-v2',
    });
    const b = await last(id);
    expect(b.event).toBe('lobby.profile_update');
    expect(b.data).toEqual({ lobby_id: id, profile_id: 'studio-v2', source_device_id: admin });
    expectTargets(b, guests);
    expect((await getLobby(h.client, id)).profile_id).toBe('studio-v2');
    expectError(await h.client.send('lobby.profile_update', guests[0]!, { lobby_id: id, profile_id: 'x' }), 'forbidden');
    expectError(await h.client.send('lobby.profile_update', admin, { lobby_id: id, profile_id: 7 }), 'invalid_request');
  });
});

describe('role.assign', () => {
  it('lobby - role.assign sets role and slot and broadcasts role_assigned', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 2);
    const [g1] = guests as [string];
    const req = { lobby_id: id, target_device_id: g1, role: 'speaker', role_slot_id: 'S1', role_slot_label: 'Front left' };
    expect(await h.client.call('role.assign', admin, req)).toEqual({ ok: true });
    const b = await last(id);
    expect(b.data).toMatchObject({
      type: 'role_assigned',
      target_device_id: g1,
      role: 'speaker',
      role_slot_id: 'S1',
      role_slot_label: 'Front left',
    });
    expectTargets(b, [admin, ...guests]);
    const p = (b.data.lobby as Lobby).participants.find((x) => x.device_id === g1);
    expect(p).toMatchObject({ role: 'speaker', role_slot_id: 'S1', role_slot_label: 'Front left' });
    // The admin may give itself a role.
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: admin, role: 'microphone', role_slot_id: 'M1' });
    expect((await getLobby(h.client, id)).participants[0]).toMatchObject({ role: 'microphone', role_slot_id: 'M1', role_slot_label: null });
  });

  it('lobby - a slot held by another device of the same role is slot_taken with details', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 3);
    const [g1, g2, g3] = guests as [string, string, string];
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g1, role: 'speaker', role_slot_id: 'S1' });
    const e = expectError(
      await h.client.send('role.assign', admin, { lobby_id: id, target_device_id: g2, role: 'speaker', role_slot_id: 'S1' }),
      'slot_taken',
    );
    expect(e.details).toEqual({ role: 'speaker', role_slot_id: 'S1', device_id: g1 });
    expect((await getLobby(h.client, id)).participants.find((p) => p.device_id === g2)?.role).toBe('none');
    // The same slot id under another role is free; re-assigning the holder its own slot is fine.
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g2, role: 'microphone', role_slot_id: 'S1' });
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g1, role: 'speaker', role_slot_id: 'S1' });
    // A slot held by a device that left is free again.
    await h.client.call('lobby.leave', g1, { lobby_id: id });
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g3, role: 'speaker', role_slot_id: 'S1' });
  });

  it('lobby - role none clears both slot fields', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 1);
    const [g1] = guests as [string];
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g1, role: 'speaker', role_slot_id: 'S1', role_slot_label: 'L' });
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g1, role: 'none', role_slot_id: 'S9', role_slot_label: 'ignored' });
    const b = await last(id);
    expect(b.data).toMatchObject({ type: 'role_assigned', role: 'none', role_slot_id: null, role_slot_label: null });
    expect((await getLobby(h.client, id)).participants[1]).toMatchObject({ role: 'none', role_slot_id: null, role_slot_label: null });
    // Without a slot, a role keeps no old slot either.
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g1, role: 'speaker', role_slot_id: 'S1' });
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g1, role: 'microphone' });
    expect((await getLobby(h.client, id)).participants[1]).toMatchObject({ role: 'microphone', role_slot_id: null });
  });

  it('lobby - role.assign is admin only, for joined targets, within the limits', async () => {
    const { admin, guests, id } = await lobbyWith(h.client, 2);
    const [g1, g2] = guests as [string, string];
    const to = (target: string, extra: Record<string, unknown> = {}) => ({ lobby_id: id, target_device_id: target, role: 'speaker', ...extra });
    expectError(await h.client.send('role.assign', g1, to(g2)), 'forbidden');
    expectError(await h.client.send('role.assign', admin, to(device('stranger'))), 'participant_not_found');
    await h.client.call('lobby.leave', g2, { lobby_id: id });
    expectError(await h.client.send('role.assign', admin, to(g2)), 'participant_not_found');
    for (const [extra, path] of [
      [{ role: 'drummer' }, 'role'],
      [{ role_slot_id: 'x'.repeat(65) }, 'role_slot_id'],
      [{ role_slot_label: 'x'.repeat(129) }, 'role_slot_label'],
    ] as const) {
      const e = expectError(await h.client.send('role.assign', admin, to(g1, extra)), 'invalid_request');
      expect(e.details?.issues).toEqual([{ path, message: expect.any(String) }]);
    }
    await h.client.call('role.assign', admin, to(g1, { role_slot_id: 'x'.repeat(64), role_slot_label: 'y'.repeat(128) }));
    const roles = (await settle(tap, h.app, id)).filter((b) => b.data.type === 'role_assigned');
    expect(roles).toHaveLength(1);
  });
});
