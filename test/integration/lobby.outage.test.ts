// The transactional outbox through a NATS outage: changes committed while NATS is down are
// published once it is back, in id order, each exactly once in the stream (CONTRACT section 5).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { startPrivateNats, waitFor, type PrivateNats } from '../helpers/infra.js';
import { GatewayClient, createTestEnv, device, startService } from '../helpers/service.js';
import { Tap, lobbyStream, loggedIds } from '../helpers/lobby.js';

let nats: PrivateNats;
let env: Awaited<ReturnType<typeof createTestEnv>>;
let app: App;
let client: GatewayClient;
let tap: Tap;
beforeAll(async () => {
  nats = await startPrivateNats();
  env = await createTestEnv({ NATS_URL: nats.url });
  app = await startService(env.env);
  client = await GatewayClient.connect(env, nats.url);
  tap = await Tap.open(client);
});
afterAll(async () => {
  tap?.close();
  await client?.close().catch(() => undefined);
  await app?.stop().catch(() => undefined);
  await nats?.stop();
  await env?.db.drop();
});

async function unpublished(lobbyId: string): Promise<number> {
  const rows = await app.db.read((em) =>
    em.execute<Array<{ n: string }>>('select count(*) as n from lobby_events where lobby_id = ? and published_at is null', [lobbyId]),
  );
  return Number(rows[0]!.n);
}

describe('outbox', () => {
  it('outbox - a NATS outage delays broadcasts but loses none', async () => {
    const admin = device('admin');
    const lobby = await client.call('lobby.create', admin, {});
    await waitFor(() => tap.of(lobby.lobby_id).length === 1);

    await nats.kill();
    // The service still commits changes (here through its dispatcher, as the HTTP shim does).
    const guests = [device('g1'), device('g2'), device('g3')];
    for (const g of guests) {
      const o = await app.dispatcher.dispatch({ subject: 'lobby.join', body: JSON.stringify({ code: lobby.code }), deviceId: g });
      expect(o.ok).toBe(true);
    }
    const o = await app.dispatcher.dispatch({ subject: 'lobby.leave', body: JSON.stringify({ lobby_id: lobby.lobby_id }), deviceId: admin });
    expect(o.ok).toBe(true);
    const ids = await loggedIds(app, lobby.lobby_id);
    expect(ids).toHaveLength(6); // created, 3 x joined, left, admin_changed
    expect(await unpublished(lobby.lobby_id)).toBeGreaterThan(0);

    await nats.restart();
    const stored = await waitFor(
      async () => {
        const s = await lobbyStream(client.nc, env.stream, env.prefix, lobby.lobby_id);
        return s.length >= ids.length ? s : undefined;
      },
      { timeoutMs: 20_000, message: 'events committed during the outage never reached the stream' },
    );
    expect(stored.map((m) => m.body.id)).toEqual(ids);
    expect(stored.map((m) => m.msgId)).toEqual(ids.map((id) => `${lobby.lobby_id}:${id}`));
    expect(stored.map((m) => m.body.data.type)).toEqual([
      'lobby_created',
      'participant_joined',
      'participant_joined',
      'participant_joined',
      'participant_left',
      'admin_changed',
    ]);
    await waitFor(async () => (await unpublished(lobby.lobby_id)) === 0, { message: 'rows not marked published' });
    // A core subscriber gets what is published while it is connected: it may miss what the
    // relay sent before it resubscribed (that is what the stream is for), but what it gets is
    // in id order once duplicates are dropped, and it gets everything after it is back.
    const late = device('g4');
    await client.call('lobby.join', late, { code: lobby.code });
    const last = (await loggedIds(app, lobby.lobby_id)).at(-1)!;
    await waitFor(() => tap.of(lobby.lobby_id).some((c) => c.body.id === last), { timeoutMs: 20_000 });
    const seen = [...new Set(tap.of(lobby.lobby_id).map((c) => c.body.id))];
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen.at(-1)).toBe(last);
  });
});
