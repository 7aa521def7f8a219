import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { device, startHarness } from '../helpers/service.js';

let h: Awaited<ReturnType<typeof startHarness>>;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

describe('lobby smoke', () => {
  it('lobby - create, join, leave flow broadcasts and lands in the stream', async () => {
    const admin = device('admin');
    const guest = device('guest');
    const lobby = await h.client.call('lobby.create', admin, {});
    expect(lobby.code).toMatch(/^[A-HJKMNP-Z2-9]{6}$/);
    const joined = await h.client.call('lobby.join', guest, { code: ` ${lobby.code.toLowerCase()} ` });
    expect(joined.participants.map((p) => p.device_id)).toEqual([admin, guest]);
    await h.client.call('lobby.leave', admin, { lobby_id: lobby.lobby_id });
    const ups = await h.client.waitFor(lobby.lobby_id, 'lobby.updated', 4);
    expect(ups.map((u) => u.data.type)).toEqual(['lobby_created', 'participant_joined', 'participant_left', 'admin_changed']);
    const ids = ups.map((u) => u.id);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    const stream = await h.client.streamMessages(lobby.lobby_id);
    expect(stream.map((m) => m.body.id)).toEqual(ids);
    expect(stream[0]!.msgId).toBe(`${lobby.lobby_id}:${ids[0]}`);
  });
});
