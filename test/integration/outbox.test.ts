/**
 * The transactional outbox across crashes: a SIGKILL at any moment leaves the stream with every
 * logged event exactly once, in id order (the NATS outage case is in lobby.outage.test.ts).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createTestEnv, deleteStream, device, GatewayClient } from '../helpers/service.js';
import { spawnService } from '../helpers/process.js';
import { startPrivateNats, waitFor, withPgClient } from '../helpers/infra.js';

type Env = Awaited<ReturnType<typeof createTestEnv>>;
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

/** The event log of the database: lobby -> ids in order. */
async function loggedIds(env: Env): Promise<Map<string, number[]>> {
  const rows = await withPgClient(env.databaseUrl, (c) =>
    c.query<{ lobby_id: string; id: string }>('select lobby_id, id from lobby_events order by id'),
  );
  const out = new Map<string, number[]>();
  for (const r of rows.rows) out.set(r.lobby_id, [...(out.get(r.lobby_id) ?? []), Number(r.id)]);
  return out;
}

async function unpublished(env: Env): Promise<number> {
  const r = await withPgClient(env.databaseUrl, (c) =>
    c.query<{ n: number }>('select count(*)::int as n from lobby_events where published_at is null'),
  );
  return r.rows[0]!.n;
}

/** Asserts that the stream holds exactly the logged events: once each, in id order per lobby. */
async function expectStreamEqualsLog(client: GatewayClient, env: Env): Promise<number> {
  const log = await loggedIds(env);
  const msgs = await client.streamMessages();
  const seen = new Map<string, number[]>();
  for (const m of msgs) {
    expect(m.subject).toBe(`${env.prefix}lobby.${m.body.lobby_id}.${m.body.event}`);
    expect(m.msgId).toBe(`${m.body.lobby_id}:${m.body.id}`);
    seen.set(m.body.lobby_id, [...(seen.get(m.body.lobby_id) ?? []), m.body.id]);
  }
  expect(new Map([...seen].sort())).toEqual(new Map([...log].sort()));
  return msgs.length;
}

describe('outbox', () => {
  it('outbox - SIGKILL between a change and its broadcast loses nothing', async () => {
    const nats = await startPrivateNats();
    cleanups.push(() => nats.stop());
    const env = await createTestEnv({ NATS_URL: nats.url });
    cleanups.push(() => env.db.drop());
    const client = await GatewayClient.connect(env, nats.url);
    cleanups.push(() => client.close());

    const svc = await spawnService(env.env);
    const admin = device('admin');
    const lobby = await client.call('lobby.create', admin, {});
    await waitFor(async () => (await unpublished(env)) === 0);

    // With NATS down, changes made through the HTTP shim commit but cannot be broadcast yet.
    await nats.kill();
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${String(svc.ready.http)}/gateway/handle`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          client: { device_id: device(`g${i}`), connection_id: `c${i}` },
          message: { event: 'lobby.join', data: { code: lobby.code } },
        }),
      });
      expect(res.status).toBe(200);
    }
    expect(await unpublished(env)).toBe(5);
    svc.kill('SIGKILL');
    await svc.exited;

    await nats.restart();
    const again = await spawnService(env.env);
    await waitFor(async () => (await unpublished(env)) === 0, { timeoutMs: 20_000, message: 'backlog published after restart' });
    expect(await expectStreamEqualsLog(client, env)).toBe(6);
    again.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  });

  it('outbox - SIGKILL under load: after restart the stream holds every logged event once, in id order', async () => {
    const env = await createTestEnv();
    cleanups.push(() => env.db.drop(), () => deleteStream(env));
    const client = await GatewayClient.connect(env);
    cleanups.push(() => client.close());

    for (let round = 0; round < 3; round++) {
      const svc = await spawnService(env.env);
      // Several lobbies written concurrently, so publishes are in flight when the kill lands.
      let stop = false;
      const drivers = Array.from({ length: 4 }, async (_, k) => {
        const admin = device(`a${round}${k}`);
        const lobby = await client.send('lobby.create', admin, {});
        if (!lobby.ok) return;
        for (let i = 0; !stop; i++) {
          const r = await client.send(
            'lobby.step_update',
            admin,
            { lobby_id: lobby.data.lobby_id, step_index: i },
            { timeoutMs: 1_000 },
          ).catch(() => undefined);
          if (!r) return;
        }
      });
      await waitFor(async () => [...(await loggedIds(env)).values()].flat().length > 40 * (round + 1), {
        message: 'load running',
      });
      svc.kill('SIGKILL');
      stop = true;
      await svc.exited;
      await Promise.all(drivers);
    }

    const svc = await spawnService(env.env);
    await waitFor(async () => (await unpublished(env)) === 0, { timeoutMs: 20_000, message: 'backlog published' });
    const n = await expectStreamEqualsLog(client, env);
    expect(n).toBeGreaterThan(120);
    svc.kill('SIGTERM');
    expect(await svc.exited).toBe(0);
  });
});
