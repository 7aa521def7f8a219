/**
 * Private nats-server processes started from a configuration file: one server with the
 * deployment's users (deploy/nats/render.ts), a server in operator (JWT) mode, and a 3-node
 * JetStream cluster whose nodes the tests kill and restart. Ports are free ones, stores are
 * temp dirs removed by `stop()`; the system server on 4222 is never touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { freePort, natsServerBinary, waitFor } from '../../helpers/infra.js';

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => (s.destroy(), resolve(false)));
  });
}

export interface NatsNode {
  name: string;
  port: number;
  url: string;
  /** The server's own log (stderr), for permission violations and the like. */
  log(): string;
  running(): boolean;
  /** SIGKILL: a crash. The store is kept for `start()`. */
  kill(): Promise<void>;
  /** Starts (again) with the same configuration, port and store. */
  start(): Promise<void>;
  /** Rewrites the configuration and makes the running server reload it (SIGHUP). */
  reload(conf: string): Promise<void>;
}

/**
 * A nats-server run from `conf` (written to `dir`) with `env` added to its environment
 * (the passwords the configuration refers to as `$VARIABLE`).
 */
export async function natsNode(name: string, port: number, conf: string, dir: string, env: Record<string, string> = {}): Promise<NatsNode> {
  const file = join(dir, `${name}.conf`);
  await writeFile(file, conf);
  let proc: ChildProcess | undefined;
  let log = '';
  const exited = () => !proc || proc.exitCode !== null || proc.signalCode !== null;
  const node: NatsNode = {
    name,
    port,
    url: `nats://127.0.0.1:${port}`,
    log: () => log,
    running: () => !exited(),
    async kill() {
      if (exited()) return;
      const gone = new Promise((r) => proc!.once('exit', r));
      proc!.kill('SIGKILL');
      await gone;
    },
    async reload(next: string) {
      await writeFile(file, next);
      const seen = log.length;
      proc!.kill('SIGHUP');
      await waitFor(() => /Reloaded server configuration/.test(log.slice(seen)), { message: `nats-server ${name} reloaded` });
    },
    async start() {
      if (!exited()) return;
      const p = spawn(natsServerBinary(), ['-c', file], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      proc = p;
      live.add(p);
      p.once('exit', () => live.delete(p));
      p.stderr!.setEncoding('utf8').on('data', (chunk: string) => (log = (log + chunk).slice(-200_000)));
      await waitFor(
        async () => {
          if (exited()) throw new Error(`nats-server ${name} exited: ${log.slice(-2000)}`);
          return accepts(port);
        },
        { timeoutMs: 10_000, message: `nats-server ${name} accepting on ${port}` },
      );
    },
  };
  await node.start();
  return node;
}

/** A scratch directory and a way to remove it with every server started in it. */
export async function scratch(): Promise<{ dir: string; nodes: NatsNode[]; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'nats-faults-'));
  const nodes: NatsNode[] = [];
  return {
    dir,
    nodes,
    async cleanup() {
      await Promise.all(nodes.map((n) => n.kill()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface Cluster {
  nodes: NatsNode[];
  /** Every node's URL, comma-separated: a NATS_URL for the cluster. */
  url: string;
  /** The node a `host:port` (NatsConnection.getServer()) belongs to. */
  nodeAt(server: string): NatsNode;
  byName(name: string): NatsNode;
  cleanup(): Promise<void>;
}

/** Three nats-server processes with routes between them and clustered JetStream. */
export async function startCluster(size = 3): Promise<Cluster> {
  const s = await scratch();
  const ports = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const name = (i: number) => `n${i + 1}`;
  for (let i = 0; i < size; i++) {
    const store = join(s.dir, name(i));
    await mkdir(store, { recursive: true });
    const routes = routePorts.filter((_, j) => j !== i).map((p) => `nats-route://127.0.0.1:${p}`);
    const conf = [
      `server_name: ${name(i)}`,
      `listen: 127.0.0.1:${ports[i]}`,
      `jetstream { store_dir: ${JSON.stringify(store)} }`,
      `cluster { name: lobbytest, listen: 127.0.0.1:${routePorts[i]}, routes: [${routes.join(', ')}] }`,
      '',
    ].join('\n');
    s.nodes.push(await natsNode(name(i), ports[i]!, conf, s.dir));
  }
  const cluster: Cluster = {
    nodes: s.nodes,
    url: s.nodes.map((n) => n.url).join(','),
    nodeAt: (server) => {
      const port = Number(server.split(':').at(-1));
      const node = s.nodes.find((n) => n.port === port);
      if (!node) throw new Error(`no cluster node at ${server}`);
      return node;
    },
    byName: (n) => s.nodes.find((x) => x.name === n)!,
    cleanup: s.cleanup,
  };
  await waitClusterReady(cluster.nodes);
  return cluster;
}

/** Waits until JetStream answers through each running node (meta leader elected, peers known). */
export async function waitClusterReady(nodes: NatsNode[], timeoutMs = 30_000): Promise<void> {
  for (const node of nodes.filter((n) => n.running())) {
    const nc = await connect({ servers: node.url, noAsyncTraces: true });
    try {
      await waitFor(
        async () => {
          const jsm = await jetstreamManager(nc, { timeout: 2_000 });
          await jsm.getAccountInfo();
          return true;
        },
        { timeoutMs, intervalMs: 200, message: `JetStream ready through ${node.name}` },
      );
    } finally {
      await nc.close();
    }
  }
}
