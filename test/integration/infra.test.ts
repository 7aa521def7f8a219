// Self-test of the integration-test infrastructure against real NATS and PostgreSQL.
import { existsSync } from 'node:fs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createDatabase,
  freePort,
  natsUrl,
  pgAdminUrl,
  startPrivateNats,
  uniqueId,
  waitFor,
  withPgClient,
  type PrivateNats,
} from '../helpers/infra.js';

// Everything a test opens is closed here, even when an assertion fails midway.
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

async function privateNats(): Promise<PrivateNats> {
  const nats = await startPrivateNats();
  cleanups.push(() => nats.stop());
  return nats;
}

async function natsClient(url: string, opts: Parameters<typeof connect>[0] = {}): Promise<NatsConnection> {
  const nc = await connect({ servers: url, timeout: 2_000, ...opts });
  cleanups.push(() => nc.close());
  return nc;
}

/** Publishes on a fresh subject and resolves with what the subscription received. */
async function pubSubRoundTrip(nc: NatsConnection): Promise<string> {
  const subject = `${uniqueId('infra')}.ping`;
  const sub = nc.subscribe(subject, { max: 1 });
  await nc.flush(); // the subscription is registered on the server before we publish
  nc.publish(subject, 'hello');
  for await (const msg of sub) return msg.string();
  throw new Error('subscription closed without a message');
}

describe('infra', () => {
  it('infra - uniqueId is short and safe for subjects and identifiers', async () => {
    const ids = new Set(Array.from({ length: 100 }, () => uniqueId()));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^t_[a-z0-9]{12}$/);
    expect(uniqueId('lobby')).toMatch(/^lobby_[a-z0-9]{12}$/);
    expect(() => uniqueId('Bad.Prefix')).toThrow(/prefix/);
    expect(await freePort()).toBeGreaterThan(0);
  });

  it('infra - createDatabase gives a fresh database that is gone after drop()', async () => {
    const db = await createDatabase();
    cleanups.push(() => db.drop());
    expect(db.name).toMatch(/^lobby_test_[a-z0-9]+$/);
    expect(db.url).toMatch(new RegExp(`^postgresql://.*/${db.name}$`));
    expect(new URL(db.url).pathname).not.toBe(new URL(pgAdminUrl()).pathname);

    // Leave a connection open on purpose: drop() must terminate it.
    const { Client } = (await import('pg')).default;
    const leftover = new Client({ connectionString: db.url });
    leftover.on('error', () => {}); // the terminated backend reports an error event
    await leftover.connect();
    cleanups.push(() => leftover.end());
    const { rows } = await leftover.query('SELECT current_database() AS name');
    expect(rows[0].name).toBe(db.name);
    await leftover.query('CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1)');

    await db.drop();
    const gone = await withPgClient(pgAdminUrl(), (c) =>
      c.query('SELECT 1 FROM pg_database WHERE datname = $1', [db.name]),
    );
    expect(gone.rowCount).toBe(0);
    await db.drop(); // idempotent
  });

  it('infra - private nats-server carries publish/subscribe with JetStream on', async () => {
    const nats = await privateNats();
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
    const nc = await natsClient(nats.url);
    expect(nc.info?.jetstream).toBe(true);
    expect(await pubSubRoundTrip(nc)).toBe('hello');

    await nats.stop();
    expect(existsSync(nats.storeDir)).toBe(false); // temp store dir is removed by stop()
    await expect(nats.restart()).rejects.toThrow(/after stop/);
  });

  it('infra - private nats-server restarts on the same port', async () => {
    const nats = await privateNats();
    const port = nats.port;
    // A long-lived client that keeps reconnecting, like the service under test would.
    const durable = await natsClient(nats.url, { maxReconnectAttempts: -1, reconnectTimeWait: 50 });
    const subject = `${uniqueId('infra')}.after_restart`;
    const received: string[] = [];
    durable.subscribe(subject, { callback: (_err, msg) => void received.push(msg.string()) });
    await durable.flush();

    await nats.kill();
    await expect(connect({ servers: nats.url, timeout: 1_000 })).rejects.toThrow();

    await nats.restart();
    expect(nats.port).toBe(port);
    const fresh = await natsClient(nats.url);
    expect(await pubSubRoundTrip(fresh)).toBe('hello');

    // The durable client reconnects to the same port and its subscription works again.
    await waitFor(
      async () => {
        fresh.publish(subject, 'back');
        await fresh.flush();
        return received.includes('back');
      },
      { intervalMs: 100, message: 'durable client did not get messages after restart' },
    );
  });

  it('infra - natsUrl() answers a request-reply round trip', async () => {
    const responder = await natsClient(natsUrl());
    const requester = await natsClient(natsUrl());
    const subject = `${uniqueId('infra')}.echo`;
    responder.subscribe(subject, { callback: (_err, msg) => void msg.respond(`pong:${msg.string()}`) });
    await responder.flush();
    const reply = await requester.request(subject, 'ping', { timeout: 2_000 });
    expect(reply.string()).toBe('pong:ping');
  });

  it('infra - waitFor returns the value once the predicate passes', async () => {
    let calls = 0;
    const value = await waitFor(() => {
      calls++;
      if (calls < 3) throw new Error('not yet');
      return calls === 5 ? { calls } : null;
    });
    expect(value).toEqual({ calls: 5 });
  });

  it('infra - waitFor times out with the message and the last value or error', async () => {
    const started = Date.now();
    await expect(waitFor(() => 0, { timeoutMs: 100, message: 'never ready' })).rejects.toThrow(
      /never ready.*timed out after 100 ms.*last value: 0/,
    );
    expect(Date.now() - started).toBeLessThan(2_000);
    await expect(
      waitFor(
        () => {
          throw new Error('boom');
        },
        { timeoutMs: 50, message: 'still failing' },
      ),
    ).rejects.toThrow(/still failing.*last error: boom/);
  });
});
