/**
 * The container files, read and compared with the code: no Docker engine runs here, so a port,
 * a variable name or a path that drifts from the code must fail a test instead of a deployment.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseDuration } from '../../src/config.js';
import { NATS_USERS, renderNatsConfig } from '../../deploy/nats/render.js';
import { allBroadcastsFilter, subjectNames } from '../../subjects/index.js';
import {
  composeEnv,
  configVariableNames,
  envOf,
  execForm,
  readCompose,
  readDockerfile,
  readNatsConf,
} from '../helpers/containers.js';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const defaults = loadConfig({});
const stages = readDockerfile();
const runtime = stages.at(-1)!;
const ops = (op: string) => runtime.instructions.filter((i) => i.op === op);
const compose = readCompose();
const services = compose.services;
const NATS_CONF = 'deploy/nats/nats-server.conf';
const conf = readNatsConf(read(NATS_CONF));

/** Whether NATS subject pattern `pattern` (`*`, `>`) matches `subject`. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

describe('containers - Dockerfile', () => {
  it('dockerfile - builds in one stage and runs compiled code with production dependencies only', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages[0]!;
    expect(build.name).toBeDefined();
    expect(build.instructions.some((i) => i.op === 'RUN' && /tsc -p tsconfig\.build\.json/.test(i.args))).toBe(true);
    // Everything the build compiles is copied into the build stage.
    const { include } = JSON.parse(read('tsconfig.build.json')) as { include: string[] };
    const copied = build.instructions.filter((i) => i.op === 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(include.filter((p) => !copied.includes(p))).toEqual([]);

    expect(runtime.from).toMatch(/^node:20/);
    expect(ops('RUN').some((i) => /npm ci\b.*--omit=dev/.test(i.args))).toBe(true);
    expect(ops('COPY').some((i) => i.args.startsWith(`--from=${build.name} /app/dist`))).toBe(true);
  });

  it('dockerfile - runs as a non-root user, `npm start`s entry point, exec form', () => {
    const user = ops('USER').at(-1);
    expect(user?.args).toBeDefined();
    expect(['root', '0']).not.toContain(user!.args.split(':')[0]);
    const cmd = ops('CMD').at(-1)!;
    expect(user!.line).toBeLessThan(cmd.line);
    const argv = execForm(cmd.args);
    expect(argv[0]).toBe('node');
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start!;
    expect(start).toContain(`node ${argv[1]}`);
  });

  it('dockerfile - exposes the HTTP port of the code and sets only variables config.ts reads', () => {
    const env = envOf(runtime);
    const known = new Set([...configVariableNames(), 'NODE_ENV']);
    expect(Object.keys(env).filter((k) => !known.has(k))).toEqual([]);
    expect(ops('EXPOSE').map((i) => i.args)).toEqual([String(defaults.http.port)]);
    expect(env.HTTP_PORT).toBe(String(defaults.http.port));
    expect(loadConfig(env).http.host).toBe('0.0.0.0');
  });

  it('dockerfile - HEALTHCHECK asks GET /health with node (no curl in the slim image)', () => {
    const hc = ops('HEALTHCHECK').at(-1);
    expect(hc).toBeDefined();
    const argv = execForm(hc!.args);
    expect(argv.slice(0, 2)).toEqual(['node', '-e']);
    expect(argv[2]).toContain('/health');
    expect(argv[2]).toContain(`process.env.HTTP_PORT || ${defaults.http.port}`);
  });

  it('dockerfile - the code the image runs imports only production dependencies (npm ci --omit=dev)', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
    const files = execFileSync('git', ['ls-files', 'src', 'subjects'], { cwd: root, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(20);
    const outside: string[] = [];
    for (const f of files) {
      const source = read(f);
      for (const m of source.matchAll(/(?:from|import|import\()\s*'([^'.][^']*)'/g)) {
        const spec = m[1]!;
        if (spec.startsWith('node:')) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!(name in pkg.dependencies)) outside.push(`${f}: ${spec}`);
      }
    }
    expect(outside, 'imported at run time but not in "dependencies"').toEqual([]);
  });

  it('dockerfile - .dockerignore keeps dependencies, builds, data and git out of the context', () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const entry of ['node_modules', 'dist', 'data', '.git']) expect(ignored).toContain(entry);
  });
});

describe('containers - docker-compose.yml', () => {
  const lobby = services.lobby!;
  const env = lobby.environment!;

  it('compose - runs NATS with JetStream on file storage, PostgreSQL, the service and the simulator', () => {
    expect(Object.keys(services).sort()).toEqual(['lobby', 'nats', 'postgres', 'simulator']);
    const nats = services.nats!;
    const natsPort = new URL(defaults.nats.servers[0]!).port;
    expect(nats.ports).toContain(`${natsPort}:${natsPort}`);
    // JetStream's file store is on a named volume, and the health check asks the monitor port.
    expect(conf.storeDir).toBeDefined();
    expect(nats.volumes).toContain(`nats-data:${conf.storeDir}`);
    expect(Object.keys(compose.volumes ?? {})).toContain('nats-data');
    expect(nats.healthcheck!.test!.join(' ')).toContain(`http://127.0.0.1:${conf.httpPort}/healthz`);
    // The health check runs inside the image: an image with a shell and wget.
    expect(nats.healthcheck!.test![1]).toBe('wget');
    expect(nats.image).toMatch(/alpine/);
  });

  it('compose - nats-server runs deploy/nats/nats-server.conf, with every user\'s password', () => {
    const nats = services.nats!;
    const confPath = nats.command![nats.command!.indexOf('-c') + 1];
    expect(nats.volumes).toContain(`./${NATS_CONF}:${confPath}:ro`);
    expect(read(NATS_CONF)).toBe(renderNatsConfig());
    const env = composeEnv(nats);
    for (const [user, variable] of Object.entries(NATS_USERS)) {
      expect(conf.users.get(user)?.passwordVar).toBe(variable);
      expect(env[variable], variable).toBeTruthy();
    }
  });

  it('compose - the service connects as the lobby user, the simulator as a gateway, with their passwords', () => {
    const natsEnv = composeEnv(services.nats!);
    for (const [service, user] of [['lobby', 'lobby'], ['simulator', 'gateway']] as const) {
      const env = composeEnv(services[service]!);
      expect(env.NATS_USER, service).toBe(user);
      expect(env.NATS_PASSWORD, service).toBe(natsEnv[NATS_USERS[user]]);
    }
    // A password given to compose reaches both sides.
    const given = { NATS_LOBBY_PASSWORD: 's3cret' };
    expect(composeEnv(services.lobby!, given).NATS_PASSWORD).toBe('s3cret');
    expect(composeEnv(services.nats!, given).NATS_LOBBY_PASSWORD).toBe('s3cret');
  });

  it('compose - the lobby user may create the service\'s stream and publish its broadcasts (lobby.*.>)', () => {
    const config = loadConfig(composeEnv(lobby));
    const rights = conf.users.get('lobby')!.publish;
    expect(rights).toContain(allBroadcastsFilter(config.nats.subjectPrefix));
    expect(rights).toContain(`$JS.API.STREAM.CREATE.${config.nats.stream}`);
    // A Gateway may send every command but no broadcast.
    const gateway = conf.users.get('gateway')!.publish;
    for (const subject of subjectNames) expect(gateway.some((p) => matches(p, subject)), subject).toBe(true);
  });

  it('compose - the service environment is valid for config.ts and points at the compose services', () => {
    const known = configVariableNames();
    expect(Object.keys(env).filter((k) => !known.includes(k))).toEqual([]);
    const config = loadConfig(composeEnv(lobby));
    expect(config.http.port).toBe(defaults.http.port);
    expect(lobby.ports).toContain(`${defaults.http.port}:${config.http.port}`);
    expect(config.http.host).toBe('0.0.0.0');
    // The stream the service creates is the default one, on the unprefixed `lobby.*.>`.
    expect(config.nats.stream).toBe(defaults.nats.stream);
    expect(config.nats.subjectPrefix).toBe('');

    const nats = new URL(config.nats.servers[0]!);
    expect(nats.hostname).toBe('nats');
    expect(services.nats!.ports).toContain(`${nats.port}:${nats.port}`);

    expect(config.database.kind).toBe('postgresql');
    const db = new URL((config.database as { url: string }).url);
    const pg = services.postgres!.environment!;
    expect([db.hostname, db.username, db.password, db.pathname.slice(1)]).toEqual([
      'postgres',
      pg.POSTGRES_USER,
      pg.POSTGRES_PASSWORD,
      pg.POSTGRES_DB,
    ]);
    expect(Object.keys(lobby.depends_on!).sort()).toEqual(['nats', 'postgres']);
  });

  it('compose - a stop waits longer than the service\'s own shutdown timeout', () => {
    expect(parseDuration(lobby.stop_grace_period!)!).toBeGreaterThan(defaults.shutdownTimeoutMs);
  });

  it('compose - the simulator runs in profile sim, with the CLI of the image, against the same NATS', () => {
    const sim = services.simulator!;
    expect(sim.profiles).toEqual(['sim']);
    expect(sim.command!.slice(0, 2)).toEqual(['node', 'dist/src/cli/simulate.js']);
    expect(sim.environment!.NATS_URL).toBe(env.NATS_URL);
    expect(sim.depends_on!.lobby!.condition).toBe('service_healthy');
    expect(sim.healthcheck?.disable).toBe(true);
  });

  it('compose - the README gives the ports compose publishes', () => {
    const readme = read('README.md');
    expect(readme).toContain('docker compose up');
    expect(readme).toContain('docker compose --profile sim up simulator');
    for (const [service, port] of [['nats', '4222'], ['lobby', String(defaults.http.port)]] as const) {
      expect(services[service]!.ports).toContain(`${port}:${port}`);
      expect(readme).toContain(`localhost:${port}`);
    }
  });
});
