/**
 * Readers of the container files, for tests that compare them with the code (no Docker engine
 * runs here, so the files are checked by reading them).
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

const root = new URL('../../', import.meta.url);

export interface Instruction {
  /** Upper-case instruction: FROM, RUN, ENV, ... */
  op: string;
  args: string;
  line: number;
}

export interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/**
 * The Dockerfile's stages and instructions: comments and blank lines dropped, `\`-continued lines
 * joined (enough for our Dockerfile; no parser directives or heredocs).
 */
export function readDockerfile(text = readFileSync(new URL('Dockerfile', root), 'utf8')): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = `${line.slice(0, -1).trimEnd()} ${lines[++i]!.trim()}`;
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`Dockerfile line ${start + 1}: cannot read "${line}"`);
    const op = m[1]!.toUpperCase();
    const args = m[2]!;
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      stages.push({ from: f[1]!, name: f[2], instructions: [] });
      continue;
    }
    if (stages.length === 0) throw new Error(`Dockerfile line ${start + 1}: ${op} before FROM`);
    stages.at(-1)!.instructions.push({ op, args, line: start + 1 });
  }
  return stages;
}

/** `KEY=value` pairs of the ENV instructions of a stage (the `ENV KEY=value ...` form). */
export function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of stage.instructions.filter((x) => x.op === 'ENV')) {
    for (const pair of i.args.split(/\s+/)) {
      const [k, ...v] = pair.split('=');
      env[k!] = v.join('=');
    }
  }
  return env;
}

/** The JSON-array (exec) form of CMD / HEALTHCHECK CMD. */
export function execForm(args: string): string[] {
  const json = args.slice(args.indexOf('['));
  return JSON.parse(json) as string[];
}

export interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  ports?: string[];
  environment?: Record<string, string>;
  profiles?: string[];
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
  healthcheck?: { test?: string[]; disable?: boolean };
  stop_grace_period?: string;
}

export function readCompose(): { services: Record<string, ComposeService>; volumes?: Record<string, unknown> } {
  return parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'));
}

/** The environment variable names config.ts reads: the keys of its zod `schema` object. */
export function configVariableNames(): string[] {
  const source = readFileSync(new URL('src/config.ts', root), 'utf8');
  const start = source.indexOf('const schema = z.object({');
  const end = source.indexOf('\n});', start);
  if (start < 0 || end < 0) throw new Error('src/config.ts: no `const schema = z.object({ ... });`');
  return [...source.slice(start, end).matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!);
}

/** Compose's `${NAME}` / `${NAME:-default}` interpolation, from `env` (empty: the defaults). */
export function interpolate(value: string, env: Record<string, string> = {}): string {
  return value.replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_m, name: string, fallback?: string) => env[name] || fallback || '');
}

/** A service's environment with compose's interpolation applied. */
export function composeEnv(service: ComposeService, env: Record<string, string> = {}): Record<string, string> {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(String(v), env)]));
}

/** What the tests need of a nats-server configuration file: store, monitor port, users' rights. */
export function readNatsConf(text: string) {
  const storeDir = /store_dir:\s*"([^"]+)"/.exec(text)?.[1];
  const httpPort = /^http_port:\s*(\d+)/m.exec(text)?.[1];
  const users = new Map<string, { passwordVar: string; publish: string[] }>();
  // Each user block: `user: <name>`, `password: $<VAR>`, then `publish: { allow: [ ... ] }`.
  for (const m of text.matchAll(/user:\s*(\w+)\s+password:\s*\$(\w+)[\s\S]*?publish:\s*\{\s*allow:\s*\[([\s\S]*?)\]/g)) {
    const publish = [...m[3]!.matchAll(/"([^"]+)"/g)].map((x) => x[1]!);
    users.set(m[1]!, { passwordVar: m[2]!, publish });
  }
  return { storeDir, httpPort: httpPort === undefined ? undefined : Number(httpPort), users };
}
