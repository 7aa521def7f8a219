/**
 * The v1 broadcast sink against a small HTTP server standing in for the v1 Gateway's
 * `POST /internal/broadcast`: every broadcast once, in order per lobby, with the token; across
 * refusals, a Gateway outage and a service restart; nothing old sent to a Gateway configured
 * later.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpHeader, SINK_PATH, SinkBroadcast, type Envelope } from '../../subjects/index.js';
import { freePort, waitFor, withPgClient } from '../helpers/infra.js';
import { GatewayClient, createTestEnv, deleteStream, device, startHarness, startService } from '../helpers/service.js';

const TOKEN = 'sink-token-for-tests';

interface Received {
  headers: IncomingHttpHeaders;
  body: SinkBroadcast;
  /** `<lobby_id>:<id>` from `X-Event-Id`. */
  eventId: string;
}

/** A v1 Gateway's `/internal/broadcast`: records what it accepts; can refuse or be down. */
class FakeGateway {
  readonly received: Received[] = [];
  attempts = 0;
  /** Answer 503 to this many next attempts. */
  failNext = 0;
  private server?: Server;

  constructor(public port = 0) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.attempts++;
        if (req.method !== 'POST' || req.url !== SINK_PATH) return void res.writeHead(404).end();
        if (this.failNext > 0) {
          this.failNext--;
          return void res.writeHead(503).end('{"detail":"starting"}');
        }
        this.received.push({
          headers: req.headers,
          body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
          eventId: String(req.headers[HttpHeader.eventId.toLowerCase()]),
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  /** Goes down: closes the listener and every open connection. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  of(lobbyId: string): Received[] {
    return this.received.filter((r) => r.eventId.startsWith(`${lobbyId}:`));
  }
}

/** What the sink must have sent for these broadcasts. */
const expected = (envelopes: Envelope[]) =>
  envelopes.map((e) => ({ eventId: `${e.lobby_id}:${e.id}`, body: { event: e.event, data: e.data, targets: e.targets } }));

async function undelivered(databaseUrl: string): Promise<number> {
  return withPgClient(databaseUrl, async (c) => {
    const r = await c.query<{ n: number }>('select count(*)::int as n from lobby_events where sink_delivered_at is null');
    return r.rows[0]!.n;
  });
}

/**
 * Waits until a freshly started service answers on NATS. `startApp` returns without flushing
 * its subscriptions, so under load a first request can meet "no responders".
 */
async function serving(client: GatewayClient): Promise<void> {
  await waitFor(async () => (await client.send('lobby.get', 'probe', { lobby_id: crypto.randomUUID() })).status === 404, {
    message: 'the service does not answer on NATS',
  });
}

/** Some activity in a new lobby: create, joins, roles, a shared step. Returns the lobby id. */
async function activity(client: GatewayClient, joins = 2): Promise<string> {
  const admin = device('admin');
  const lobby = await client.call('lobby.create', admin, {});
  const L = lobby.lobby_id;
  const guests = Array.from({ length: joins }, (_, i) => device(`g${i}`));
  for (const g of guests) await client.call('lobby.join', g, { code: lobby.code });
  for (const [i, g] of guests.entries()) {
    await client.call('role.assign', admin, { lobby_id: L, target_device_id: g, role: 'microphone', role_slot_id: `M${i}` });
  }
  await client.call('lobby.step_update', admin, { lobby_id: L, step_index: 1 });
  return L;
}
/** Broadcasts `activity` makes with `joins` guests. */
const activityEvents = (joins = 2) => 2 + 2 * joins;

/** Waits until the lobby's NATS broadcasts are complete; returns them. */
function broadcastsOf(client: GatewayClient, lobbyId: string, n: number): Promise<Envelope[]> {
  return waitFor(() => (client.of(lobbyId).length >= n ? client.of(lobbyId) : undefined), {
    message: `waiting for ${n} broadcasts of ${lobbyId}`,
  });
}

/** Waits until the Gateway has every one of these broadcasts, then checks once and in order. */
async function expectDelivered(gateway: FakeGateway, envelopes: Envelope[], timeoutMs = 15_000): Promise<void> {
  const lobbyId = envelopes[0]!.lobby_id;
  await waitFor(() => gateway.of(lobbyId).length >= envelopes.length, {
    timeoutMs,
    message: `waiting for ${envelopes.length} sink deliveries of ${lobbyId}`,
  });
  const got = gateway.of(lobbyId);
  expect(got.map((r) => ({ eventId: r.eventId, body: r.body }))).toEqual(expected(envelopes));
  for (const r of got) SinkBroadcast.parse(r.body);
}

describe('v1 sink', () => {
  let gateway: FakeGateway;
  let h: Awaited<ReturnType<typeof startHarness>>;
  beforeAll(async () => {
    gateway = await new FakeGateway().start();
    h = await startHarness({ GATEWAY_URL: gateway.url, INTERNAL_AUTH_TOKEN: TOKEN });
  });
  afterAll(async () => {
    await h?.stop();
    await gateway?.stop();
  });

  it('sink - every broadcast reaches the Gateway once, in order per lobby, with the token; refusals are retried', async () => {
    gateway.failNext = 3;
    const lobbies = await Promise.all([activity(h.client), activity(h.client, 3)]);
    const all = await Promise.all([
      broadcastsOf(h.client, lobbies[0]!, activityEvents(2)),
      broadcastsOf(h.client, lobbies[1]!, activityEvents(3)),
    ]);
    for (const envelopes of all) await expectDelivered(gateway, envelopes);
    await waitFor(async () => (await undelivered(h.env.databaseUrl)) === 0, { message: 'sink still has undelivered rows' });

    expect(gateway.failNext).toBe(0);
    expect(gateway.attempts).toBe(gateway.received.length + 3);
    const ids = gateway.received.map((r) => r.eventId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const r of gateway.received) {
      expect(r.headers[HttpHeader.internalToken.toLowerCase()]).toBe(TOKEN);
      expect(r.headers['content-type']).toBe('application/json');
      expect(Object.keys(r.body).sort()).toEqual(['data', 'event', 'targets']);
    }
  });

  it('sink - a Gateway outage blocks no command; everything arrives in order once it is back', async () => {
    const before = gateway.received.length;
    await gateway.stop();
    const started = performance.now();
    const L = await activity(h.client, 3);
    // 10 commands answered while the Gateway is down, far below the sink's timeouts and back-off.
    expect(performance.now() - started).toBeLessThan(5_000);
    const envelopes = await broadcastsOf(h.client, L, activityEvents(3));
    expect(await undelivered(h.env.databaseUrl)).toBeGreaterThan(0);
    expect(gateway.received.length).toBe(before);

    await gateway.start();
    await expectDelivered(gateway, envelopes);
    await waitFor(async () => (await undelivered(h.env.databaseUrl)) === 0);
    const ids = gateway.received.map((r) => r.eventId);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('v1 sink across restarts', () => {
  it('sink - broadcasts left undelivered by a stopped service are delivered by the next one', async () => {
    const gateway = new FakeGateway(await freePort());
    // The Gateway is down from the start: nothing can be delivered by the first process.
    const env = await createTestEnv({ GATEWAY_URL: gateway.url, INTERNAL_AUTH_TOKEN: TOKEN, SHUTDOWN_TIMEOUT_MS: '300' });
    const client = await GatewayClient.connect(env);
    let app = await startService(env.env);
    try {
      await serving(client);
      const L = await activity(client, 2);
      const envelopes = await broadcastsOf(client, L, activityEvents(2));
      await app.stop();
      expect(await undelivered(env.databaseUrl)).toBe(envelopes.length);

      await gateway.start();
      app = await startService(env.env);
      await expectDelivered(gateway, envelopes);
      await waitFor(async () => (await undelivered(env.databaseUrl)) === 0);
      expect(gateway.received).toHaveLength(envelopes.length);
    } finally {
      await client.close();
      await app.stop();
      await gateway.stop();
      await deleteStream(env);
      await env.db.drop();
    }
  });

  it('sink - events written without a sink are not sent to a Gateway configured later; no token, no header', async () => {
    const gateway = await new FakeGateway().start();
    const env = await createTestEnv();
    const client = await GatewayClient.connect(env);
    let app = await startService(env.env);
    try {
      await serving(client);
      const old = await activity(client, 1);
      await broadcastsOf(client, old, activityEvents(1));
      expect(await undelivered(env.databaseUrl)).toBe(0);
      await app.stop();

      app = await startService({ ...env.env, GATEWAY_URL: gateway.url });
      await serving(client);
      const L = await activity(client, 1);
      await expectDelivered(gateway, await broadcastsOf(client, L, activityEvents(1)));
      await waitFor(async () => (await undelivered(env.databaseUrl)) === 0);
      expect(gateway.of(old)).toEqual([]);
      expect(gateway.received).toHaveLength(activityEvents(1));
      for (const r of gateway.received) expect(r.headers[HttpHeader.internalToken.toLowerCase()]).toBeUndefined();
    } finally {
      await client.close();
      await app.stop();
      await gateway.stop();
      await deleteStream(env);
      await env.db.drop();
    }
  });
});
