// "A request never goes unanswered" (CONTRACT section 2), even when the reply cannot be sent:
// a private nats-server with a small max_payload makes a lobby.events page too big to send.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Header } from '../../subjects/index.js';
import type { App } from '../../src/app.js';
import { freePort, natsServerBinary, waitFor } from '../helpers/infra.js';
import { GatewayClient, createTestEnv, deleteStream, device, startService } from '../helpers/service.js';
import { expectError } from '../helpers/lobby.js';

/** Just over the 256 KiB request limit, and under one page of lobby.events. */
const MAX_PAYLOAD = 300 * 1024;

let dir: string;
let nats: ChildProcess;
let url: string;
let env: Awaited<ReturnType<typeof createTestEnv>>;
let app: App;
let client: GatewayClient;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nats-small-'));
  const port = await freePort();
  const conf = join(dir, 'nats.conf');
  await writeFile(conf, `listen: "127.0.0.1:${port}"\nmax_payload: ${MAX_PAYLOAD}\njetstream { store_dir: "${join(dir, 'js')}" }\n`);
  nats = spawn(natsServerBinary(), ['-c', conf], { stdio: 'ignore' });
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        const s = createConnection({ host: '127.0.0.1', port });
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => (s.destroy(), resolve(false)));
      }),
    { message: 'nats-server with a small max_payload did not start' },
  );
  url = `nats://127.0.0.1:${port}`;
  env = await createTestEnv({ NATS_URL: url });
  app = await startService(env.env);
  client = await GatewayClient.connect(env, url);
});
afterAll(async () => {
  await client?.close().catch(() => undefined);
  await app?.stop().catch(() => undefined);
  if (env) await deleteStream(env, url).catch(() => undefined);
  await env?.db.drop();
  nats?.kill('SIGTERM');
  if (nats && nats.exitCode === null) await new Promise((r) => nats.once('exit', r));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('replies that cannot be sent', () => {
  it('transport - a reply over the server max_payload is answered internal, not left to time out', async () => {
    expect(client.nc.info?.max_payload).toBe(MAX_PAYLOAD);
    const admin = device('admin');
    const lobby = await client.call('lobby.create', admin, {});
    // Each event after the snapshot carries the ~100 KB room: a page of them is over 300 KiB.
    await client.call('lobby.room_snapshot', admin, { lobby_id: lobby.lobby_id, room: { mesh: 'm'.repeat(100_000) } });
    for (let i = 0; i < 4; i++) await client.call('lobby.join', device(`g${i}`), { code: lobby.code });
    const r = await client.send('lobby.events', admin, { lobby_id: lobby.lobby_id }, { timeoutMs: 5_000, requestId: 'big-1' });
    const e = expectError(r, 'internal');
    expect(e.message).toBe('internal error');
    expect(r.headers?.get(Header.requestId)).toBe('big-1');
    // Smaller pages get through.
    const small = await client.call('lobby.events', admin, { lobby_id: lobby.lobby_id, limit: 2 });
    expect(small.events).toHaveLength(2);
  });
});
