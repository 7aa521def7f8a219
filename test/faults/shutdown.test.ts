// Graceful shutdown of the service process, over both transports, with real signals. Requests
// are held in flight by a slow dependency: the test locks the lobby's row in PostgreSQL, so
// every join into it waits inside the service until the test lets go.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/infra.js';
import { spawnService, type LogLine, type ServiceProcess } from '../helpers/process.js';
import { streamCount } from '../helpers/measurement.js';
import { createTestEnv, deleteStream, device, GatewayClient, type Reply } from '../helpers/service.js';

let env: Awaited<ReturnType<typeof createTestEnv>>;
let client: GatewayClient;
beforeAll(async () => {
  env = await createTestEnv();
  client = await GatewayClient.connect(env);
});
afterAll(async () => {
  await client?.close();
  await deleteStream(env).catch(() => undefined);
  await env?.db.drop();
});

/** Holds the lobby's row lock in a transaction of our own until `release()`. */
async function lockLobby(lobbyId: string): Promise<{ release(): Promise<void> }> {
  const c = new pg.Client({ connectionString: env.databaseUrl });
  await c.connect();
  await c.query('BEGIN');
  await c.query('SELECT id FROM lobbies WHERE id = $1 FOR UPDATE', [lobbyId]);
  return {
    async release() {
      await c.query('ROLLBACK').catch(() => undefined);
      await c.end();
    },
  };
}

/** Statements of the service waiting for a row lock (the requests held in flight). */
async function lockWaiters(): Promise<number> {
  const c = new pg.Client({ connectionString: env.databaseUrl });
  await c.connect();
  try {
    const r = await c.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    );
    return r.rows[0].n as number;
  } finally {
    await c.end();
  }
}

interface HttpReply {
  status: number;
  body: { lobby_id?: string; error?: { code: string } };
}

/** `n` joins over NATS and `n` over HTTP into the lobby, all held by the lock; resolves once all wait on it. */
async function joinsInFlight(svc: { ready: LogLine }, code: string, n: number, abandoned = false) {
  const nats: Array<Promise<Reply<unknown>>> = [];
  const http: Array<Promise<HttpReply>> = [];
  for (let i = 0; i < n; i++) {
    nats.push(client.send('lobby.join', device(`nats${i}`), { code }, { timeoutMs: 60_000 }));
    http.push(
      fetch(`${svc.ready.http}/lobbies/join`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code, device_id: device(`http${i}`) }),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as HttpReply['body'] })),
    );
  }
  // Requests the process will die under fail for their callers; that is expected, not unhandled.
  if (abandoned) for (const p of [...nats, ...http]) p.catch(() => undefined);
  // Every one of them is inside the service, waiting on the database (fewer than the pool's 20).
  await waitFor(async () => (await lockWaiters()) === 2 * n, { message: `${2 * n} requests waiting on the row lock` });
  return { nats, http };
}

const logged = (svc: ServiceProcess, msg: string) => waitFor(() => svc.logs.find((l) => l.msg === msg), { message: `log line "${msg}"` });

describe('graceful shutdown', () => {
  it('shutdown - SIGTERM with requests in flight over NATS and HTTP: every one gets its reply, the outbox is flushed, exit 0', async () => {
    const svc = await spawnService(env.env);
    const lobby = await client.call('lobby.create', device('admin'), { max_participants: 64 });
    const lock = await lockLobby(lobby.lobby_id);
    let released = false;
    try {
      const { nats, http } = await joinsInFlight(svc, lobby.code, 8);
      const t0 = performance.now();
      svc.kill('SIGTERM');
      await logged(svc, 'shutting down: no new requests');
      // The shutdown waits for them: hold the lock a while longer, the process stays up.
      const hold = 500;
      await new Promise((r) => setTimeout(r, hold));
      expect(await Promise.race([svc.exited, Promise.resolve('running')])).toBe('running');
      await lock.release();
      released = true;
      const [natsReplies, httpReplies] = await Promise.all([Promise.all(nats), Promise.all(http)]);
      expect(natsReplies.map((r) => r.ok)).toEqual(Array(8).fill(true));
      expect(httpReplies.map((r) => r.status)).toEqual(Array(8).fill(200));
      expect(httpReplies.every((r) => r.body.lobby_id === lobby.lobby_id)).toBe(true);
      expect(await svc.exited).toBe(0);
      const shutdownMs = performance.now() - t0;
      expect(svc.logs.some((l) => l.msg === 'shut down cleanly')).toBe(true);
      // Every join's broadcast was published before the process went.
      expect(await streamCount(client, lobby.lobby_id)).toBe(1 + 16);
      console.info(`[figures] SIGTERM with 16 requests in flight, lock held ${hold} ms after it: exit 0 after ${Math.round(shutdownMs)} ms`);
    } finally {
      if (!released) await lock.release();
    }
  });

  it('shutdown - requests stuck past SHUTDOWN_TIMEOUT_MS: exit 1 promptly at the timeout, saying where it was stuck', async () => {
    const timeoutMs = 1_500;
    const svc = await spawnService({ ...env.env, SHUTDOWN_TIMEOUT_MS: String(timeoutMs) });
    const lobby = await client.call('lobby.create', device('admin'), {});
    const lock = await lockLobby(lobby.lobby_id);
    try {
      await joinsInFlight(svc, lobby.code, 3, true);
      const t0 = performance.now();
      svc.kill('SIGTERM');
      expect(await svc.exited).toBe(1);
      const elapsed = performance.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(timeoutMs);
      expect(elapsed).toBeLessThan(timeoutMs + 1_000);
      const line = svc.logs.find((l) => l.msg === 'shutdown timed out (SHUTDOWN_TIMEOUT_MS): exiting with work unfinished');
      expect(line).toMatchObject({ level: 'error', timeout_ms: timeoutMs, step: 'HTTP requests in flight' });
      console.info(`[figures] SHUTDOWN_TIMEOUT_MS=${timeoutMs}: exit 1 after ${Math.round(elapsed)} ms`);
    } finally {
      await lock.release();
    }
  });

  it('shutdown - a second SIGTERM exits at once, saying so', async () => {
    const svc = await spawnService({ ...env.env, SHUTDOWN_TIMEOUT_MS: '60000' });
    const lobby = await client.call('lobby.create', device('admin'), {});
    const lock = await lockLobby(lobby.lobby_id);
    try {
      await joinsInFlight(svc, lobby.code, 3, true);
      svc.kill('SIGTERM');
      await logged(svc, 'shutting down: no new requests');
      const t0 = performance.now();
      svc.kill('SIGTERM');
      expect(await svc.exited).toBe(1);
      const elapsed = performance.now() - t0;
      expect(elapsed).toBeLessThan(1_000);
      const line = svc.logs.find((l) => l.msg === 'second signal: exiting now, without finishing the shutdown');
      expect(line).toMatchObject({ level: 'warn', signal: 'SIGTERM', step: 'HTTP requests in flight' });
      console.info(`[figures] second SIGTERM: exit 1 after ${Math.round(elapsed)} ms`);
    } finally {
      await lock.release();
    }
  });
});
