// The service authenticates to NATS with NATS_TOKEN, NATS_USER/NATS_PASSWORD or NATS_CREDS, each
// against a private nats-server that requires it; refused credentials stop start-up with one
// line; and no credential ever reaches the service's output (stdout and stderr of the process).
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credsAuthenticator, type ConnectionOptions } from '@nats-io/nats-core';
import { NatsAuthError } from '../../src/transport/nats.js';
import { freePort, waitFor } from '../helpers/infra.js';
import { startServiceProcess, spawnService, type ServiceProcess } from '../helpers/process.js';
import { createTestEnv, device, GatewayClient, startService } from '../helpers/service.js';
import { natsNode, scratch, type NatsNode } from './helpers/nats.js';
import { operatorSetup } from './helpers/operator.js';

const secret = (what: string) => `${what}-${randomBytes(10).toString('hex')}`;
const TOKEN = secret('tok');
const PASSWORD = secret('pw');

let s: Awaited<ReturnType<typeof scratch>>;
let env: Awaited<ReturnType<typeof createTestEnv>>;
/** One server per credential kind. */
let tokenServer: NatsNode;
let userServer: NatsNode;
let operatorServer: NatsNode;
let credsFile: string;
let userSeed: string;

beforeAll(async () => {
  s = await scratch();
  env = await createTestEnv();
  const js = (name: string) => `jetstream { store_dir: ${JSON.stringify(join(s.dir, name))} }`;
  let port = await freePort();
  tokenServer = await natsNode('token', port, `listen: 127.0.0.1:${port}\nauthorization { token: $NATS_TEST_TOKEN }\n${js('token')}\n`, s.dir, {
    NATS_TEST_TOKEN: TOKEN,
  });
  s.nodes.push(tokenServer);
  port = await freePort();
  const users = `authorization { users: [ { user: lobby, password: $NATS_TEST_PASSWORD } ] }`;
  userServer = await natsNode('user', port, `listen: 127.0.0.1:${port}\n${users}\n${js('user')}\n`, s.dir, { NATS_TEST_PASSWORD: PASSWORD });
  s.nodes.push(userServer);
  const op = await operatorSetup();
  port = await freePort();
  operatorServer = await natsNode('operator', port, op.conf(port, join(s.dir, 'operator')), s.dir);
  s.nodes.push(operatorServer);
  credsFile = join(s.dir, 'lobby.creds');
  await writeFile(credsFile, op.creds, { mode: 0o600 });
  userSeed = op.userSeed;
});
afterAll(async () => {
  await s?.cleanup();
  await env?.db.drop();
});

/** Starts the service in-process with `vars`, runs a create and a join through it, stops it. */
async function serves(server: NatsNode, vars: Record<string, string>, client: Partial<ConnectionOptions>) {
  const app = await startService({ ...env.env, NATS_URL: server.url, ...vars });
  const gw = await GatewayClient.connect(env, server.url, client);
  try {
    const lobby = await gw.call('lobby.create', device('admin'), {});
    await gw.call('lobby.join', device('guest'), { code: lobby.code });
    // The relay published both events into the stream through the same connection.
    await waitFor(async () => (await gw.streamMessages(lobby.lobby_id)).length === 2, { message: 'both events in the stream' });
  } finally {
    await gw.close();
    await app.stop();
  }
}

/** Every byte a service process wrote, for searching secrets in. */
const output = (p: ServiceProcess) => p.stdout() + p.stderr();

describe('NATS credentials', () => {
  it('nats auth - NATS_TOKEN against a server with a token', async () => {
    await serves(tokenServer, { NATS_TOKEN: TOKEN }, { token: TOKEN });
  });

  it('nats auth - NATS_USER/NATS_PASSWORD against a server with users', async () => {
    await serves(userServer, { NATS_USER: 'lobby', NATS_PASSWORD: PASSWORD }, { user: 'lobby', pass: PASSWORD });
  });

  it('nats auth - NATS_CREDS: a user JWT and nkey seed of an operator-mode account with JetStream', async () => {
    await serves(operatorServer, { NATS_CREDS: credsFile }, { authenticator: credsAuthenticator(await readFile(credsFile)) });
  });

  it('nats auth - refused credentials fail start-up at once with NatsAuthError, which names no secret', async () => {
    const wrong = secret('wrong');
    const attempts: Array<Record<string, string>> = [
      { NATS_URL: tokenServer.url, NATS_TOKEN: wrong },
      { NATS_URL: userServer.url, NATS_USER: 'lobby', NATS_PASSWORD: wrong },
      { NATS_URL: userServer.url },
    ];
    for (const vars of attempts) {
      const t0 = performance.now();
      const err = await startService({ ...env.env, ...vars }).then(
        async (app) => void (await app.stop()),
        (e: unknown) => e,
      );
      // "At once": the client gives up on a repeated auth error instead of retrying forever.
      expect(performance.now() - t0).toBeLessThan(5_000);
      expect(err).toBeInstanceOf(NatsAuthError);
      expect((err as Error).message).toMatch(/NATS refused the credentials/);
      expect((err as Error).message).not.toContain(wrong);
    }
  });
});

describe('no credential in the output', () => {
  it('nats auth - a wrong password or token at start: exit 1, one line saying so, and neither the wrong nor the right secret anywhere', async () => {
    const wrong = secret('wrong');
    const runs = [
      startServiceProcess({ ...env.env, NATS_URL: userServer.url, NATS_USER: 'lobby', NATS_PASSWORD: wrong }),
      startServiceProcess({ ...env.env, NATS_URL: tokenServer.url, NATS_TOKEN: wrong }),
      // Credentials inside the URL are wrong here too: refused, and the URL is never echoed.
      startServiceProcess({ ...env.env, NATS_URL: `nats://lobby:${wrong}@127.0.0.1:${userServer.port}` }),
    ];
    for (const p of runs) {
      expect(await p.exited).toBe(1);
      const fatal = p.logs.filter((l) => l.level === 'fatal');
      expect(fatal).toHaveLength(1);
      expect(fatal[0]).toMatchObject({ msg: 'lobby service failed to start' });
      expect(String(fatal[0]!.reason)).toMatch(/NATS refused the credentials/);
      // An expected failure: no stack.
      expect(fatal[0]!.err).toBeUndefined();
      for (const s of [wrong, PASSWORD, TOKEN]) expect(output(p)).not.toContain(s);
    }
  });

  it('nats auth - a working service (credentials in NATS_URL, then NATS_CREDS) never logs them', async () => {
    const runs: Array<Record<string, string>> = [
      { NATS_URL: `nats://lobby:${PASSWORD}@127.0.0.1:${userServer.port}` },
      { NATS_URL: operatorServer.url, NATS_CREDS: credsFile },
    ];
    for (const vars of runs) {
      const p = await spawnService({ ...env.env, ...vars });
      const gw = vars.NATS_CREDS
        ? await GatewayClient.connect(env, operatorServer.url, { authenticator: credsAuthenticator(await readFile(credsFile)) })
        : await GatewayClient.connect(env, userServer.url, { user: 'lobby', pass: PASSWORD });
      try {
        const lobby = await gw.call('lobby.create', device('admin'), {});
        expect((await gw.send('lobby.join', device('g'), { code: 'ZZZZZ2' })).error?.code).toBe('lobby_not_found');
        await gw.call('lobby.join', device('g'), { code: lobby.code });
      } finally {
        await gw.close();
      }
      p.kill('SIGTERM');
      expect(await p.exited).toBe(0);
      expect(p.ready.nats).toEqual([vars.NATS_CREDS ? operatorServer.url : `nats://127.0.0.1:${userServer.port}`]);
      for (const s of [PASSWORD, userSeed]) expect(output(p)).not.toContain(s);
    }
  });

  it('nats auth - a password changed on the server while running: the service says so and stops (exit 1), naming no password', async () => {
    const p = await spawnService({ ...env.env, NATS_URL: userServer.url, NATS_USER: 'lobby', NATS_PASSWORD: PASSWORD });
    const rotated = secret('rotated');
    // A reload with another password: nats-server closes connections that no longer authenticate.
    const conf = `listen: 127.0.0.1:${userServer.port}\nauthorization { users: [ { user: lobby, password: ${JSON.stringify(rotated)} } ] }\njetstream { store_dir: ${JSON.stringify(join(s.dir, 'user'))} }\n`;
    await userServer.reload(conf);
    expect(await p.exited).toBe(1);
    const closed = p.logs.find((l) => l.msg === 'NATS connection closed for good');
    expect(closed, JSON.stringify(p.logs.slice(-5))).toBeDefined();
    for (const s of [PASSWORD, rotated]) expect(output(p)).not.toContain(s);
  });
});
