import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, deleteStream, GatewayClient, device } from '../helpers/service.js';
import { spawnService } from '../helpers/process.js';

let env: Awaited<ReturnType<typeof createTestEnv>>;
beforeAll(async () => {
  env = await createTestEnv();
});
afterAll(async () => {
  await deleteStream(env).catch(() => undefined);
  await env?.db.drop();
});

describe('service process', () => {
  it('process - SIGTERM finishes in-flight work, flushes the outbox and exits 0', async () => {
    const svc = await spawnService(env.env);
    expect(svc.ready.startup_ms).toBeTypeOf('number');
    const client = await GatewayClient.connect(env);
    try {
      const admin = device('admin');
      const lobby = await client.call('lobby.create', admin, {});
      const joins = Array.from({ length: 10 }, (_, i) => client.send('lobby.join', device(`g${i}`), { code: lobby.code }));
      // The requests are at the server (and so routed to the service) before the signal.
      await client.nc.flush();
      svc.kill('SIGTERM');
      const replies = await Promise.all(joins);
      // Every request that reached the service before SIGTERM was answered (none timed out).
      expect(replies.every((r) => r.ok || r.status !== undefined)).toBe(true);
      expect(await svc.exited).toBe(0);
      expect(svc.logs.some((l) => l.msg === 'shut down cleanly')).toBe(true);
      const ok = replies.filter((r) => r.ok).length;
      const stream = await client.streamMessages(lobby.lobby_id);
      expect(stream.length).toBe(1 + ok);
    } finally {
      await client.close();
    }
  });

  it('process - a bad variable stops start-up with one line naming it', async () => {
    await expect(spawnService({ ...env.env, HTTP_PORT: 'eighty' }, 10_000)).rejects.toThrow(/HTTP_PORT/);
  });
});
