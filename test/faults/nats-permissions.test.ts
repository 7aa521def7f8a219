// Least-privilege NATS: a private nats-server runs the deployment's configuration
// (deploy/nats/render.ts, rendered for this test's prefix and stream). The service runs as user
// `lobby`, the test's Gateway as `gateway`, a replaying reader as `replay`.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect } from '@nats-io/transport-node';
import { PermissionViolationError, type NatsConnection } from '@nats-io/nats-core';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { broadcastSubject, lobbyBroadcastFilter, type Envelope } from '../../subjects/index.js';
import { renderNatsConfig } from '../../deploy/nats/render.js';
import { startApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { freePort, waitFor } from '../helpers/infra.js';
import { LobbyWatcher, createSession, loggedEvents, runCycle, setupLobby, type LobbySetup } from '../helpers/measurement.js';
import { createTestEnv, device, GatewayClient } from '../helpers/service.js';
import { natsNode, scratch, type NatsNode } from './helpers/nats.js';

// nats-server parses a $VARIABLE's value as a config value: it must start with a letter (deploy/nats).
const password = () => `pw-${randomBytes(12).toString('hex')}`;
const pw = { lobby: password(), gateway: password(), replay: password() };

let s: Awaited<ReturnType<typeof scratch>>;
let env: Awaited<ReturnType<typeof createTestEnv>>;
let server: NatsNode;
let app: App;
let gw: GatewayClient;
let replay: NatsConnection;
const serviceLog: Array<{ level: string; msg: string }> = [];
/** Asynchronous errors each client connection reported (permission violations). */
const errors: Record<'gateway' | 'replay', Error[]> = { gateway: [], replay: [] };
/** The lobby that a full session ran in (test 1), used by the later tests. */
let L: LobbySetup;

function recordErrors(nc: NatsConnection, into: Error[]): void {
  void (async () => {
    for await (const st of nc.status()) if (st.type === 'error') into.push((st as { error: Error }).error);
  })();
}

beforeAll(async () => {
  s = await scratch();
  env = await createTestEnv();
  const port = await freePort();
  const conf = renderNatsConfig({ prefix: env.prefix, stream: env.stream, listen: `127.0.0.1:${port}`, storeDir: join(s.dir, 'js'), monitorPort: null });
  server = await natsNode('users', port, conf, s.dir, {
    NATS_LOBBY_PASSWORD: pw.lobby,
    NATS_GATEWAY_PASSWORD: pw.gateway,
    NATS_REPLAY_PASSWORD: pw.replay,
  });
  s.nodes.push(server);
  const config = loadConfig({ ...env.env, NATS_URL: server.url, NATS_USER: 'lobby', NATS_PASSWORD: pw.lobby });
  const sink = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const line of chunk.toString().split('\n')) if (line) serviceLog.push(JSON.parse(line));
      done();
    },
  });
  app = await startApp(config, createLogger('info', sink));
  gw = await GatewayClient.connect(env, server.url, { user: 'gateway', pass: pw.gateway });
  recordErrors(gw.nc, errors.gateway);
  replay = await connect({ servers: server.url, user: 'replay', pass: pw.replay, noAsyncTraces: true });
  recordErrors(replay, errors.replay);
});
afterAll(async () => {
  await gw?.close();
  await replay?.close();
  await app?.stop();
  await s?.cleanup();
  await env?.db.drop();
});

/** Every message the stream holds for one lobby, read as the replay user (ordered consumer). */
async function replayLobby(lobbyId: string): Promise<Envelope[]> {
  const jsm = await jetstreamManager(replay);
  const info = await jsm.streams.info(env.stream, { subjects_filter: lobbyBroadcastFilter(lobbyId, env.prefix) });
  const total = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  const consumer = await jetstream(replay).consumers.get(env.stream, {
    filter_subjects: lobbyBroadcastFilter(lobbyId, env.prefix),
    deliver_policy: DeliverPolicy.All,
  });
  const out: Envelope[] = [];
  while (out.length < total) {
    const batch = await consumer.fetch({ max_messages: total - out.length, expires: 2_000 });
    for await (const m of batch) out.push(m.json<Envelope>());
  }
  await consumer.delete().catch(() => undefined);
  return out;
}

/** Server log lines reporting a permissions violation for `user`. */
const violations = (user: string) => server.log().split('\n').filter((l) => /Violation/.test(l) && l.includes(`"${user}"`));

describe('least-privilege NATS users', () => {
  it('nats users - a lobby and a full measurement session run with the service as lobby and the Gateway as gateway', async () => {
    L = await setupLobby(gw, { speakers: 1, microphones: 2 });
    // The join guard's bucket is used too: a wrong code is recorded, then looked up.
    const typo = device('typo');
    expect((await gw.send('lobby.join', typo, { code: 'ZZZZZ2' })).error?.code).toBe('lobby_not_found');
    expect((await gw.send('lobby.join', typo, { code: L.code })).ok).toBe(true);
    const watcher = await LobbyWatcher.watch(gw, L.lobbyId);
    const sessionId = await createSession(gw, L);
    await runCycle(gw, L, sessionId, 0, { watcher });
    await watcher.until('measurement.session_complete');
    watcher.close();
    // A Gateway (or the simulator, connected as one) may ask the service's discovery subjects.
    const ping = await gw.nc.request('$SRV.PING.lobby', '', { timeout: 5_000 });
    expect((ping.json() as { name: string }).name).toBe('lobby');
    expect(violations('gateway')).toEqual([]);
    // Everything the service did was within its permissions.
    expect(violations('lobby')).toEqual([]);
    expect(serviceLog.filter((l) => l.level === 'error' || l.msg === 'NATS error')).toEqual([]);
    // And the stream got every event of the log, readable by the replay user.
    const logged = await loggedEvents(gw, L);
    await waitFor(async () => (await replayLobby(L.lobbyId)).length === logged.length, { message: 'stream caught up' });
    expect((await replayLobby(L.lobbyId)).map((e) => e.id)).toEqual(logged.map((e) => e.id));
  });

  it('nats users - the Gateway cannot publish a broadcast: permission violation, the stream and subscribers never see it', async () => {
    const before = await replayLobby(L.lobbyId);
    const fake = { id: 999_999, event: 'lobby.updated', lobby_id: L.lobbyId, data: { type: 'lobby_closed' } };
    const subject = broadcastSubject(L.lobbyId, 'lobby.updated', env.prefix);
    gw.nc.publish(subject, JSON.stringify(fake));
    await gw.nc.flush();
    const err = await waitFor(() => errors.gateway.find((e) => e instanceof PermissionViolationError), {
      message: 'the gateway connection reports a permissions violation',
    });
    expect(err.message).toContain(subject);
    // The server logs the violation too (its log line may come a moment after the client's -ERR).
    await waitFor(() => violations('gateway').some((l) => l.includes('Publish') && l.includes(subject)), {
      message: 'the server logs the gateway publish violation',
    });
    // The Gateway's own subscription on lobby.*.> (and so every Gateway) never got it.
    expect(gw.of(L.lobbyId).some((b) => b.id === fake.id)).toBe(false);
    expect(await replayLobby(L.lobbyId)).toEqual(before);
    // The connection survives the refusal: commands go on.
    expect((await gw.send('lobby.get', L.admin, { lobby_id: L.lobbyId })).ok).toBe(true);
  });

  it('nats users - the replay user reads the stream (ordered consumer) but cannot publish into it', async () => {
    const logged = await loggedEvents(gw, L);
    const replayed = await replayLobby(L.lobbyId);
    expect(replayed.map((e) => [e.id, e.event])).toEqual(logged.map((e) => [e.id, e.type]));
    expect(violations('replay')).toEqual([]);

    const subject = broadcastSubject(L.lobbyId, 'lobby.updated', env.prefix);
    replay.publish(subject, JSON.stringify({ id: 999_998 }));
    await replay.flush();
    await waitFor(() => errors.replay.some((e) => e instanceof PermissionViolationError && e.message.includes(subject)), {
      message: 'the replay connection reports a permissions violation',
    });
    // A JetStream publish (a request on the same subject) is refused as well.
    await expect(jetstream(replay).publish(subject, JSON.stringify({ id: 999_997 }), { timeout: 2_000 })).rejects.toThrow();
    // Nor may it manage the stream.
    await expect((await jetstreamManager(replay)).streams.purge(env.stream)).rejects.toThrow();
    expect(await replayLobby(L.lobbyId)).toEqual(replayed);
  });
});
