// lobby.create and lobby.join end to end over NATS, as the Gateway sends them.
import { describe, expect, it } from 'vitest';
import { LOBBY_CODE, Lobby } from '../../subjects/index.js';
import { device } from '../helpers/service.js';
import { Tap, withTappedHarness, type Harness, expectError, expectTargets, getLobby, lobbyWith, settle } from '../helpers/lobby.js';

let h: Harness;
let tap: Tap;
withTappedHarness((started) => ({ h, tap } = started));

const CODE = new RegExp(`^[${LOBBY_CODE.alphabet}]{6}$`);

describe('lobby.create', () => {
  it('lobby - create uses the defaults and broadcasts lobby_created with the whole lobby', async () => {
    const admin = device('admin');
    const before = Date.now();
    const lobby = Lobby.parse(await h.client.call('lobby.create', admin, {}));
    expect(lobby.code).toMatch(CODE);
    expect(lobby).toMatchObject({
      admin_device_id: admin,
      creator_device_id: admin,
      state: 'open',
      max_participants: 32,
      room: null,
      step_index: null,
      profile_id: null,
      active_session_id: null,
    });
    expect(Date.parse(lobby.created_at)).toBeGreaterThanOrEqual(before - 1000);
    expect(lobby.participants).toEqual([
      {
        device_id: admin,
        role: 'none',
        role_slot_id: null,
        role_slot_label: null,
        status: 'joined',
        connected: true,
        joined_at: expect.any(String),
        left_at: null,
      },
    ]);
    const [b, ...rest] = await settle(tap, h.app, lobby.lobby_id);
    expect(rest).toEqual([]);
    expect(b!.event).toBe('lobby.updated');
    expect(b!.data).toEqual({ type: 'lobby_created', lobby_id: lobby.lobby_id, device_id: admin, lobby });
    expectTargets(b!, [admin]);
  });

  it('lobby - create accepts max_participants 2 to 64 and refuses others with details.issues', async () => {
    for (const n of [2, 64]) {
      expect((await h.client.call('lobby.create', device('admin'), { max_participants: n })).max_participants).toBe(n);
    }
    // null means absent (the default); anything else out of range or of the wrong type is refused.
    expect((await h.client.call('lobby.create', device('admin'), { max_participants: null } as never)).max_participants).toBe(32);
    for (const bad of [1, 65, 0, -3, 2.5, '10', true]) {
      const e = expectError(await h.client.send('lobby.create', device('admin'), { max_participants: bad }), 'invalid_request');
      expect(e.details?.issues).toEqual([{ path: 'max_participants', message: expect.any(String) }]);
    }
  });

  it('lobby - two lobbies never share a code while open', async () => {
    const codes = await Promise.all(Array.from({ length: 30 }, () => h.client.call('lobby.create', device('a'), {})));
    expect(new Set(codes.map((l) => l.code)).size).toBe(30);
  });
});

describe('lobby.join', () => {
  it('lobby - join is case-insensitive, ignores spaces and broadcasts participant_joined', async () => {
    const { admin, lobby, id } = await lobbyWith(h.client, 0);
    const guest = device('guest');
    const joined = Lobby.parse(await h.client.call('lobby.join', guest, { code: `  ${lobby.code.toLowerCase()}\t ` }));
    expect(joined.lobby_id).toBe(id);
    expect(joined.participants.map((p) => [p.device_id, p.status])).toEqual([
      [admin, 'joined'],
      [guest, 'joined'],
    ]);
    const bs = await settle(tap, h.app, id);
    expect(bs.map((b) => b.data.type)).toEqual(['lobby_created', 'participant_joined']);
    expect(bs[1]!.data).toEqual({ type: 'participant_joined', lobby_id: id, device_id: guest, rejoined: false, lobby: joined });
    expectTargets(bs[1]!, [admin, guest]);
    expect(bs[0]!.id).toBeLessThan(bs[1]!.id);
  });

  it('lobby - joining again while joined answers the lobby and broadcasts nothing', async () => {
    const { guests, code, id } = await lobbyWith(h.client, 1);
    const again = await h.client.call('lobby.join', guests[0]!, { code });
    expect(again.participants.filter((p) => p.device_id === guests[0])).toHaveLength(1);
    const bs = await settle(tap, h.app, id);
    expect(bs.map((b) => b.data.type)).toEqual(['lobby_created', 'participant_joined']);
  });

  it('lobby - a rejoin after leaving restores joined and keeps the role', async () => {
    const { admin, guests, code, id } = await lobbyWith(h.client, 2);
    const [g1] = guests as [string];
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g1, role: 'speaker', role_slot_id: 'S1', role_slot_label: 'Left' });
    await h.client.call('lobby.leave', g1, { lobby_id: id });
    const before = (await getLobby(h.client, id)).participants;
    // Only joined devices are listed: g1 is gone until it rejoins.
    expect(before.map((p) => p.device_id)).toEqual([admin, guests[1]]);

    const back = await h.client.call('lobby.join', g1, { code });
    const me = back.participants.find((p) => p.device_id === g1)!;
    expect(me).toMatchObject({ status: 'joined', left_at: null, role: 'speaker', role_slot_id: 'S1', role_slot_label: 'Left' });
    const first = (await h.client.call('lobby.events', admin, { lobby_id: id })).events.find(
      (e) => e.payload.type === 'participant_joined' && e.payload.device_id === g1,
    )!;
    const joinedFirst = (first.payload.lobby as { participants: Array<{ device_id: string; joined_at: string }> }).participants;
    expect(me.joined_at).toBe(joinedFirst.find((p) => p.device_id === g1)!.joined_at);
    // Listed again in its first join order, not moved to the end.
    expect(back.participants.map((p) => p.device_id)).toEqual([admin, g1, guests[1]]);
    const bs = await settle(tap, h.app, id);
    const rejoin = bs.at(-1)!;
    expect(rejoin.data).toMatchObject({ type: 'participant_joined', device_id: g1, rejoined: true });
    expectTargets(rejoin, [admin, g1, guests[1]!]);
  });

  it('lobby - a rejoin drops a slot that another device took meanwhile', async () => {
    const { admin, guests, code, id } = await lobbyWith(h.client, 2);
    const [g1, g2] = guests as [string, string];
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g1, role: 'speaker', role_slot_id: 'S1' });
    await h.client.call('lobby.leave', g1, { lobby_id: id });
    await h.client.call('role.assign', admin, { lobby_id: id, target_device_id: g2, role: 'speaker', role_slot_id: 'S1' });
    const back = await h.client.call('lobby.join', g1, { code });
    expect(back.participants.find((p) => p.device_id === g1)).toMatchObject({ role: 'speaker', role_slot_id: null, role_slot_label: null });
    expect(back.participants.find((p) => p.device_id === g2)).toMatchObject({ role: 'speaker', role_slot_id: 'S1' });
    await settle(tap, h.app, id);
  });

  it('lobby - a wrong or malformed code is lobby_not_found', async () => {
    const { code } = await lobbyWith(h.client, 0);
    const other = [...LOBBY_CODE.alphabet].find((c) => c !== code[5])!;
    for (const wrong of [code.slice(0, 5) + other, 'XY', '', `${code}2`, 'ABCDE0', 'ABCDEO']) {
      expectError(await h.client.send('lobby.join', device('stranger'), { code: wrong }), 'lobby_not_found');
    }
  });

  it('lobby - the 11th wrong code in a minute is rate_limited, even with the right code', async () => {
    const { code, id } = await lobbyWith(h.client, 0);
    const guesser = device('guesser');
    for (let i = 0; i < 10; i++) {
      expectError(await h.client.send('lobby.join', guesser, { code: 'ZZZZZ2' }), 'lobby_not_found');
    }
    for (const c of ['ZZZZZ2', code]) {
      const e = expectError(await h.client.send('lobby.join', guesser, { code: c }), 'rate_limited');
      expect(e.details?.retry_after_ms).toBeGreaterThan(0);
      expect(e.details?.retry_after_ms).toBeLessThanOrEqual(60_000);
    }
    // Only the guesser is held back; nothing was joined.
    await h.client.call('lobby.join', device('honest'), { code });
    expect((await getLobby(h.client, id)).participants.map((p) => p.device_id)).not.toContain(guesser);
  });

  it('lobby - join beyond max_participants is lobby_full; a departure makes room', async () => {
    const { admin, guests, code, id } = await lobbyWith(h.client, 1, { max_participants: 2 });
    const late = device('late');
    const e = expectError(await h.client.send('lobby.join', late, { code }), 'lobby_full');
    expect(e.details).toMatchObject({ max_participants: 2 });
    await h.client.call('lobby.leave', guests[0]!, { lobby_id: id });
    const l = await h.client.call('lobby.join', late, { code });
    expect(l.participants.filter((p) => p.status === 'joined').map((p) => p.device_id)).toEqual([admin, late]);
    // The one who left cannot come back while it is full again.
    expectError(await h.client.send('lobby.join', guests[0]!, { code }), 'lobby_full');
    await settle(tap, h.app, id);
  });

  it('lobby - join of a lobby that is not open is lobby_not_open with details.state', async () => {
    const { admin, guests, code, id } = await lobbyWith(h.client, 1);
    await h.client.call('lobby.start', admin, { lobby_id: id });
    const e = expectError(await h.client.send('lobby.join', device('late'), { code }), 'lobby_not_open');
    expect(e.details).toEqual({ state: 'measurement_running' });
    // A device already in it still gets the lobby.
    expect((await h.client.call('lobby.join', guests[0]!, { code })).state).toBe('measurement_running');
    await settle(tap, h.app, id);
  });

  it('lobby - kicked device cannot rejoin', async () => {
    const { admin, guests, code, id } = await lobbyWith(h.client, 1);
    await h.client.call('lobby.kick', admin, { lobby_id: id, target_device_id: guests[0]! });
    expectError(await h.client.send('lobby.join', guests[0]!, { code }), 'forbidden');
    expect((await getLobby(h.client, id)).participants.map((p) => p.device_id)).toEqual([admin]);
    await settle(tap, h.app, id);
  });

  it('lobby - concurrent joins never exceed max_participants', async () => {
    const { admin, code, id } = await lobbyWith(h.client, 0, { max_participants: 5 });
    const devices = Array.from({ length: 20 }, (_, i) => device(`rush${i}`));
    const replies = await Promise.all(devices.map((d) => h.client.send('lobby.join', d, { code })));
    const winners = devices.filter((_, i) => replies[i]!.ok);
    expect(winners).toHaveLength(4);
    for (const r of replies.filter((r) => !r.ok)) expectError(r, 'lobby_full');

    const lobby = await getLobby(h.client, id);
    expect(lobby.participants.map((p) => p.device_id).sort()).toEqual([admin, ...winners].sort());
    const joins = (await settle(tap, h.app, id)).filter((b) => b.data.type === 'participant_joined');
    expect(joins.map((b) => b.data.device_id).sort()).toEqual([...winners].sort());
    // Each broadcast shows the lobby as it was right after that join: 2, 3, 4, 5 members.
    expect(joins.map((b) => (b.data.lobby as Lobby).participants.length)).toEqual([2, 3, 4, 5]);
    expect(lobby.participants.map((p) => p.device_id)).toEqual([admin, ...joins.map((b) => b.data.device_id)]);
  });
});
