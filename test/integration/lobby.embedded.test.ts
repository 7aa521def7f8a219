// The embedded database (DATABASE_URL=pglite:<dir>, the default without a server): the lobby
// flow over NATS, and the data still there after a restart on the same directory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { Header } from '../../subjects/index.js';
import type { App } from '../../src/app.js';
import { device, startHarness, startService } from '../helpers/service.js';
import { Tap, expectError, settle } from '../helpers/lobby.js';

let dir: string;
let h: Awaited<ReturnType<typeof startHarness>>;
let tap: Tap;
let app: App;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lobby-pglite-'));
  h = await startHarness({ DATABASE_URL: `pglite:${dir}` });
  app = h.app;
  tap = await Tap.open(h.client);
});
afterAll(async () => {
  tap?.close();
  if (app !== h?.app) await app?.stop();
  await h?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('embedded database', () => {
  it('embedded - create, join, role, leave over NATS, and the lobby survives a restart', async () => {
    expect(app.db.embedded).toBe(true);
    const c = h.client;
    const admin = device('admin');
    const guest = device('guest');
    const lobby = await c.call('lobby.create', admin, { max_participants: 4 });
    await c.call('lobby.join', guest, { code: ` ${lobby.code.toLowerCase()} ` });
    await c.call('role.assign', admin, { lobby_id: lobby.lobby_id, target_device_id: guest, role: 'microphone', role_slot_id: 'M1' });
    await c.call('lobby.leave', admin, { lobby_id: lobby.lobby_id });
    expectError(await c.send('lobby.start', admin, { lobby_id: lobby.lobby_id }), 'forbidden');
    const hh = natsHeaders();
    hh.set(Header.deviceId, guest);
    hh.set(Header.idempotencyKey, 'step-1');
    const keyed = () => c.nc.request(`${h.env.prefix}lobby.step_update`, JSON.stringify({ lobby_id: lobby.lobby_id, step_index: 2 }), { headers: hh, timeout: 10_000 });
    const first = await keyed();

    const bs = await settle(tap, app, lobby.lobby_id);
    expect(bs.map((b) => (b.event === 'lobby.updated' ? b.data.type : b.event))).toEqual([
      'lobby_created',
      'participant_joined',
      'role_assigned',
      'participant_left',
      'admin_changed',
      'lobby.step_update',
    ]);
    const before = await c.call('lobby.get', guest, { lobby_id: lobby.lobby_id });

    await app.stop();
    app = await startService(h.env.env);

    const after = await c.call('lobby.get', guest, { code: lobby.code });
    expect(after).toEqual(before);
    expect(after).toMatchObject({ admin_device_id: guest, max_participants: 4, step_index: 2 });
    expect(after.participants.find((p) => p.device_id === guest)).toMatchObject({ role: 'microphone', role_slot_id: 'M1' });
    expect(Buffer.from((await keyed()).data).equals(Buffer.from(first.data))).toBe(true);
    // The restarted service keeps going: ids continue after the old ones.
    await c.call('lobby.join', admin, { code: lobby.code });
    const all = await settle(tap, app, lobby.lobby_id);
    expect(all).toHaveLength(bs.length + 1);
    expect(all.at(-1)!.data).toMatchObject({ type: 'participant_joined', device_id: admin, rejoined: true });
  });
});
