// A stream that survives a NATS node: three nats-server processes with routes and clustered
// JetStream, the stream and the join-failure bucket at NATS_STREAM_REPLICAS=3. Round 1 kills
// the node the service is connected to, round 2 the stream's leader, each in the middle of a
// measurement session. Commands go on, the session completes, every broadcast reaches a
// subscriber on a surviving node, and the stream ends up equal to the event log.
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allBroadcastsFilter, type Envelope } from '../../subjects/index.js';
import type { App } from '../../src/app.js';
import { streamLeaderElected } from '../../src/outbox/jetstream.js';
import { joinFailuresBucket } from '../../src/transport/join-failures.js';
import { waitFor, withPgClient } from '../helpers/infra.js';
import { LobbyWatcher, createSession, cycleSteps, setupLobby, TRIGGERS, type LobbySetup } from '../helpers/measurement.js';
import { createTestEnv, device, GatewayClient, startService } from '../helpers/service.js';
import { startCluster, waitClusterReady, type Cluster, type NatsNode } from './helpers/nats.js';

let cluster: Cluster;
let env: Awaited<ReturnType<typeof createTestEnv>>;
let app: App;
/** Recovery figures per round, printed at the end. */
const figures: Record<string, Record<string, number | string>> = {};

beforeAll(async () => {
  cluster = await startCluster(3);
  env = await createTestEnv({ NATS_URL: cluster.url, NATS_STREAM_REPLICAS: '3' });
  // The stream exists already with one replica (an older deployment): start-up scales it to 3.
  const nc = await admin();
  await (await jetstreamManager(nc)).streams.add({ name: env.stream, subjects: [allBroadcastsFilter(env.prefix)], num_replicas: 1 });
  await nc.close();
  app = await startService(env.env);
});
afterAll(async () => {
  await app?.stop();
  await cluster?.cleanup();
  await env?.db.drop();
  console.info(`[figures] cluster failover: ${JSON.stringify(figures, null, 1)}`);
});

/** A connection to the running nodes, for inspecting the stream. */
function admin(nodes: NatsNode[] = cluster.nodes.filter((n) => n.running())): Promise<NatsConnection> {
  return GatewayClient.connect(env, nodes.map((n) => n.url)).then((c) => c.nc);
}

async function streamInfo(name = env.stream) {
  const nc = await admin();
  try {
    return await (await jetstreamManager(nc)).streams.info(name);
  } finally {
    await nc.close();
  }
}

/** The lobby's rows in the event log: ids in order, and whether each was published. */
async function eventLog(lobbyId: string): Promise<Array<{ id: number; type: string; published: boolean }>> {
  return withPgClient(env.databaseUrl, async (c) => {
    const r = await c.query('SELECT id, type, published_at FROM lobby_events WHERE lobby_id = $1 ORDER BY id', [lobbyId]);
    return r.rows.map((row) => ({ id: Number(row.id), type: row.type as string, published: row.published_at !== null }));
  });
}

/** Sends until it succeeds (a failover refuses or times out some requests), for at most 30 s. */
async function persist<T>(send: () => Promise<T>): Promise<T> {
  return waitFor(
    async () => {
      try {
        return { value: await send() };
      } catch {
        return undefined;
      }
    },
    { timeoutMs: 30_000, intervalMs: 50, message: 'command through the failover' },
  ).then((r) => r.value);
}

/**
 * Sends `lobby.step_update` every 100 ms from `startAt`, recording when each reply and each
 * broadcast came back: the command and broadcast recovery after a kill.
 */
function probe(gw: GatewayClient, L: LobbySetup) {
  const sent: Array<{ step: number; at: number; replied?: number; failed?: boolean }> = [];
  let stop = false;
  let step = 1000;
  const loop = (async () => {
    while (!stop) {
      const p = { step: step++, at: performance.now() } as (typeof sent)[number];
      sent.push(p);
      void gw
        .send('lobby.step_update', L.admin, { lobby_id: L.lobbyId, step_index: p.step }, { timeoutMs: 2_000 })
        .then((r) => (r.ok ? (p.replied = performance.now()) : (p.failed = true)))
        .catch(() => (p.failed = true));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    sent,
    async stop() {
      stop = true;
      await loop;
    },
    /** ms from `t` to the first reply to a probe sent after `t`. */
    commandsBackAfter(t: number) {
      const first = sent.find((p) => p.at >= t && p.replied !== undefined);
      return first ? Math.round(first.replied! - t) : NaN;
    },
  };
}

/** ms from `t` until the first broadcast of a probe sent after `t` reached the watcher. */
function broadcastsBackAfter(w: LobbyWatcher, sent: Array<{ step: number; at: number }>, t: number): number {
  for (const [i, e] of w.events.entries()) {
    const step = (e.data as { step_index?: number }).step_index;
    const p = sent.find((x) => x.step === step);
    if (e.event === 'lobby.step_update' && p && p.at >= t) return Math.round(w.arrivedAt[i]! - t);
  }
  return NaN;
}

/**
 * One round: a session of two speakers; the first cycle before the kill, the second after,
 * its steps retried through the failover the way a Gateway would.
 */
async function round(label: string, victim: () => Promise<NatsNode>) {
  const target = await victim();
  const survivors = cluster.nodes.filter((n) => n !== target);
  // The Gateway (and its subscriber) sits on a surviving node.
  const gw = await GatewayClient.connect(env, survivors.map((n) => n.url), { noRandomize: true });
  const L = await setupLobby(gw, { speakers: 2, microphones: 2 });
  const watcher = await LobbyWatcher.watch(gw, L.lobbyId);
  const sessionId = await createSession(gw, L);
  const probes = probe(gw, L);
  try {
    for (const [k, group] of cycleSteps(L, sessionId, 0).entries()) {
      await Promise.all(group.map((s) => gw.call(s.subject, s.device, s.data)));
      await watcher.until(TRIGGERS[k]!, 1);
    }
    const killedAt = performance.now();
    await target.kill();
    // When the surviving nodes have elected a leader for the stream (for the figures).
    let electedAt = NaN;
    const advisories = gw.nc.subscribe(streamLeaderElected(env.stream), {
      callback: () => void (Number.isNaN(electedAt) && (electedAt = performance.now())),
    });
    // Speaker 2: auto-advance starts its cycle; each step is retried until the service answers.
    for (const [k, group] of cycleSteps(L, sessionId, 1).entries()) {
      await Promise.all(group.map((s) => persist(() => gw.call(s.subject, s.device, s.data, { timeoutMs: 2_000 }))));
      await watcher.until(TRIGGERS[k]!, 2, 30_000);
    }
    await watcher.until('measurement.session_complete', 1, 30_000);
    const completedAt = performance.now();
    await probes.stop();
    // Let the last probes finish, then everything in the log must be published.
    await waitFor(() => probes.sent.every((p) => p.replied !== undefined || p.failed), { timeoutMs: 5_000 });
    await waitFor(async () => (await eventLog(L.lobbyId)).every((e) => e.published), {
      timeoutMs: 30_000,
      message: 'every event published',
    });
    const streamCaughtUp = Math.round(performance.now() - killedAt);
    advisories.unsubscribe();

    // The stream equals the event log: every row once, in id order.
    const log = await eventLog(L.lobbyId);
    // (Retried: JetStream API calls wait for a new meta leader if the dead node was it.)
    const stream = await persist(() => gw.streamMessages(L.lobbyId));
    expect(stream.map((m) => m.body.id)).toEqual(log.map((e) => e.id));
    expect(stream.map((m) => m.body.event)).toEqual(log.map((e) => e.type));
    expect(stream.map((m) => m.msgId)).toEqual(log.map((e) => `${L.lobbyId}:${e.id}`));
    // And the subscriber on a surviving node saw every one of them (duplicates dropped by id).
    const seen = new Set(gw.of(L.lobbyId).map((e: Envelope) => e.id));
    expect(log.filter((e) => !seen.has(e.id))).toEqual([]);

    figures[label] = {
      killed: target.name,
      stream_leader_after_kill_ms: Number.isNaN(electedAt) ? 'no election (leader elsewhere)' : Math.round(electedAt - killedAt),
      commands_back_ms: probes.commandsBackAfter(killedAt),
      broadcasts_back_ms: broadcastsBackAfter(watcher, probes.sent, killedAt),
      failed_probes: probes.sent.filter((p) => p.failed).length,
      session_done_after_kill_ms: Math.round(completedAt - killedAt),
      stream_complete_after_kill_ms: streamCaughtUp,
      events: log.length,
    };
  } finally {
    await probes.stop();
    watcher.close();
    await gw.close();
    // Back to three nodes for what follows.
    await target.start();
  }
  await waitClusterReady(cluster.nodes);
  await waitFor(async () => (await streamInfo()).cluster?.replicas?.every((r) => r.current) === true, {
    timeoutMs: 30_000,
    message: 'stream replicas current again',
  });
}

/** Asks the stream's leader to step down until the leader is not on `node`. */
async function moveStreamLeaderOff(node: NatsNode): Promise<void> {
  const nc = await admin();
  try {
    await waitFor(
      async () => {
        const leader = (await streamInfo()).cluster?.leader;
        if (leader && leader !== node.name) return true;
        if (leader) await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${env.stream}`, '', { timeout: 5_000 }).catch(() => undefined);
        return false;
      },
      { timeoutMs: 30_000, intervalMs: 500, message: `a stream leader other than ${node.name}` },
    );
  } finally {
    await nc.close();
  }
}

describe('a stream that survives a NATS node', () => {
  it('cluster - start-up scales the stream (and the join-failure bucket) to NATS_STREAM_REPLICAS=3', async () => {
    // Scaled from 1 to 3 at start-up: once the new peers have elected a leader, 3 nodes hold it.
    const info = await waitFor(async () => {
      const i = await streamInfo();
      return i.cluster?.leader && i;
    });
    expect(info.config.num_replicas).toBe(3);
    expect(new Set([info.cluster!.leader, ...(info.cluster!.replicas ?? []).map((r) => r.name)]).size).toBe(3);
    const kv = await streamInfo(`KV_${joinFailuresBucket(env.stream)}`);
    expect(kv.config.num_replicas).toBe(3);
  });

  it('cluster - round 1: the node the service is connected to dies mid-session', async () => {
    await round('service_node', async () => {
      // Only the service's node: the stream's leader lives elsewhere (round 2 is about that).
      const serviceNode = cluster.nodeAt(app.nc.getServer());
      await moveStreamLeaderOff(serviceNode);
      return serviceNode;
    });
  });

  it('cluster - round 2: the stream leader dies mid-session (the service keeps its node)', async () => {
    await round('stream_leader', async () => {
      await moveStreamLeaderOff(cluster.nodeAt(app.nc.getServer()));
      return cluster.byName((await streamInfo()).cluster!.leader!);
    });
  });

  it('cluster - join codes still work after the failovers (the guard fails open or finds its bucket)', async () => {
    const gw = await GatewayClient.connect(env, cluster.url);
    try {
      const lobby = await gw.call('lobby.create', device('admin'), {});
      expect((await gw.send('lobby.join', device('g'), { code: 'ZZZZZ2' })).error?.code).toBe('lobby_not_found');
      expect((await gw.send('lobby.join', device('g'), { code: lobby.code })).ok).toBe(true);
    } finally {
      await gw.close();
    }
  });
});
