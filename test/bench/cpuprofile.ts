/**
 * Reads a V8 `.cpuprofile` (what `node --cpu-prof` writes: `nodes` with `callFrame`,
 * `samples` and `timeDeltas`) and totals SELF time by category (MikroORM, knex, pg, nats,
 * pino, zod, fastify, GC, node internals, our own code...) and by function. Pure but for the
 * source-map lookup, so it is unit-tested with a hand-made profile.
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CallFrame {
  functionName: string;
  url: string;
  /** 0-based, as V8 writes them. */
  lineNumber: number;
  columnNumber: number;
}
export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  /** Microseconds between consecutive samples (the first from startTime). */
  timeDeltas: number[];
}

const IO_WRITES = 'I/O writes (native)';

/** Ordered: the first rule whose test matches names the category. */
const RULES: [string, (url: string, fn: string) => boolean][] = [
  ['GC', (_u, f) => f === '(garbage collector)'],
  // Native socket/pipe writes: their self time is mostly the write system call.
  [IO_WRITES, (u, f) => u === '' && /^write(Buffer|v|Utf8String|Latin1String|AsciiString|UCS2String)$/.test(f)],
  ['idle', (_u, f) => f === '(idle)'],
  ['(program)', (_u, f) => f === '(program)'],
  ['MikroORM', (u) => u.includes('/node_modules/@mikro-orm/')],
  ['knex', (u) => u.includes('/node_modules/knex/')],
  ['pg', (u) => /\/node_modules\/pg[^/]*\//.test(u) || u.includes('/node_modules/postgres-')],
  ['nats', (u) => u.includes('/node_modules/@nats-io/')],
  ['pino', (u) => /\/node_modules\/(pino[^/]*|sonic-boom|thread-stream|fast-redact|quick-format-unescaped|on-exit-leak-free)\//.test(u)],
  ['zod', (u) => u.includes('/node_modules/zod/')],
  ['fastify', (u) => /\/node_modules\/(fastify|@fastify\/[^/]+|avvio|find-my-way|light-my-request)\//.test(u)],
  ['other dependencies', (u) => u.includes('/node_modules/')],
  ['node internals', (u) => u.startsWith('node:') || u.startsWith('internal/')],
  // node_modules are taken above, so these are our own files (dist/src, dist/subjects).
  ['ours: src/', (u) => u.includes('/src/')],
  ['ours: subjects/', (u) => u.includes('/subjects/')],
  ['V8 builtins / native', (u) => u === ''],
];

export function categorize(frame: Pick<CallFrame, 'url' | 'functionName'>): string {
  for (const [name, test] of RULES) if (test(frame.url, frame.functionName)) return name;
  return 'other';
}

export interface FunctionTotal {
  name: string;
  category: string;
  /** file:line (our own code mapped to its TypeScript source when a source map is there). */
  location: string;
  selfMs: number;
}

export interface ProfileSummary {
  /** Self time of the samples before `readyAtUs` (start-up), left out of everything below. */
  startupMs: number;
  totalMs: number;
  /** Total minus idle: the time the process was busy. */
  busyMs: number;
  categories: { category: string; selfMs: number }[];
  functions: FunctionTotal[];
}

export type Locate = (frame: CallFrame) => string;

/**
 * Self time per node: each sample lasts until the next one (as Chrome DevTools counts it).
 * `readyAtUs` (the profile's clock: CLOCK_MONOTONIC microseconds, the same as
 * `process.hrtime` in any process of the machine) splits off the start-up.
 */
export function summarizeProfile(profile: CpuProfile, locate: Locate = plainLocation, readyAtUs = -Infinity): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let startupUs = 0;
  let t = profile.startTime;
  const stamps = profile.timeDeltas.map((d) => (t += d));
  for (let i = 0; i < profile.samples.length; i++) {
    const next = i + 1 < stamps.length ? stamps[i + 1]! : profile.endTime;
    const dur = Math.max(0, next - stamps[i]!);
    if (stamps[i]! < readyAtUs) {
      startupUs += dur;
      continue;
    }
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dur);
  }
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  /**
   * Native socket writes say nothing by themselves: name the library that wrote (the first
   * caller outside node's own stream code), e.g. `I/O writes: pg` for one write per statement.
   */
  const withOwner = (category: string, id: number): string => {
    if (category !== IO_WRITES) return category;
    for (let p = parentOf.get(id); p !== undefined; p = parentOf.get(p)) {
      const owner = categorize(byId.get(p)!.callFrame);
      if (owner !== 'node internals' && owner !== 'V8 builtins / native' && owner !== IO_WRITES) return `I/O writes: ${owner}`;
    }
    return category;
  };
  const cats = new Map<string, number>();
  const fns = new Map<string, FunctionTotal>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const ms = us / 1000;
    total += ms;
    const category = withOwner(categorize(node.callFrame), id);
    cats.set(category, (cats.get(category) ?? 0) + ms);
    const location = locate(node.callFrame);
    const name = node.callFrame.functionName || '(anonymous)';
    const key = `${name}\0${location}\0${category}`;
    const f = fns.get(key) ?? { name, category, location, selfMs: 0 };
    f.selfMs += ms;
    fns.set(key, f);
  }
  const idle = cats.get('idle') ?? 0;
  return {
    startupMs: startupUs / 1000,
    totalMs: total,
    busyMs: total - idle,
    categories: [...cats].map(([category, selfMs]) => ({ category, selfMs })).sort((a, b) => b.selfMs - a.selfMs),
    functions: [...fns.values()].sort((a, b) => b.selfMs - a.selfMs),
  };
}

/** `file:line` relative to `root`, 1-based; node_modules paths from the package on. */
export function plainLocation(frame: CallFrame, root = ''): string {
  if (!frame.url) return '';
  let file = frame.url.startsWith('file://') ? fileURLToPath(frame.url) : frame.url;
  const nm = file.lastIndexOf('/node_modules/');
  if (nm >= 0) file = file.slice(nm + '/node_modules/'.length);
  else if (root && file.startsWith(root)) file = file.slice(root.length);
  return `${file}:${frame.lineNumber + 1}`;
}

/**
 * A locator that maps our compiled dist/*.js frames back to their .ts source lines through
 * the build's source maps (node:module SourceMap); anything else as `plainLocation`.
 */
export function sourceMapLocator(root: string): Locate {
  const maps = new Map<string, SourceMap | null>();
  const mapOf = (file: string): SourceMap | null => {
    if (!maps.has(file)) {
      const mapFile = `${file}.map`;
      maps.set(file, existsSync(mapFile) ? new SourceMap(JSON.parse(readFileSync(mapFile, 'utf8'))) : null);
    }
    return maps.get(file)!;
  };
  return (frame) => {
    if (frame.url.startsWith('file://') && !frame.url.includes('/node_modules/')) {
      const file = fileURLToPath(frame.url);
      const entry = mapOf(file)?.findEntry(frame.lineNumber, frame.columnNumber);
      if (entry && 'originalSource' in entry && entry.originalSource) {
        const o = entry.originalSource;
        const src = o.startsWith('file://') ? fileURLToPath(o) : resolve(dirname(file), o);
        const rel = src.startsWith(root) ? src.slice(root.length) : src;
        return `${rel}:${entry.originalLine + 1}`;
      }
    }
    return plainLocation(frame, root);
  };
}

const pct = (x: number, of: number) => (of > 0 ? `${((100 * x) / of).toFixed(1)}%` : '-');

/** The printed report: categories (share of busy time) and the top functions. */
export function formatSummary(s: ProfileSummary, top = 20): string {
  const lines = [
    ...(s.startupMs > 0 ? [`start-up ${(s.startupMs / 1000).toFixed(2)} s (until the first request was answered; left out below)`] : []),
    `busy ${(s.busyMs / 1000).toFixed(2)} s of ${(s.totalMs / 1000).toFixed(2)} s profiled after start-up (the rest idle)`,
    '',
    'self time by category (share of busy time):',
  ];
  const cw = Math.max(...s.categories.map((c) => c.category.length), 8);
  for (const c of s.categories) {
    if (c.category === 'idle') continue;
    lines.push(`  ${c.category.padEnd(cw)}  ${c.selfMs.toFixed(0).padStart(7)} ms  ${pct(c.selfMs, s.busyMs).padStart(6)}`);
  }
  lines.push('', `top ${top} functions by self time:`);
  const fns = s.functions.filter((f) => f.category !== 'idle').slice(0, top);
  const nw = Math.min(40, Math.max(...fns.map((f) => f.name.length), 8));
  const kw = Math.max(...fns.map((f) => f.category.length), 8);
  for (const f of fns) {
    const name = f.name.length > nw ? `${f.name.slice(0, nw - 1)}~` : f.name;
    lines.push(`  ${f.selfMs.toFixed(0).padStart(7)} ms ${pct(f.selfMs, s.busyMs).padStart(6)}  ${name.padEnd(nw)}  ${f.category.padEnd(kw)}  ${f.location}`);
  }
  return lines.join('\n');
}
