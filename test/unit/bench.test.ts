// The benchmark's pure parts: percentiles, the worker pool, goals, and the .cpuprofile reader.
import { describe, expect, it } from 'vitest';
import { categorize, formatSummary, summarizeProfile, type CpuProfile } from '../bench/cpuprofile.js';
import { parseOptions } from '../bench/options.js';
import { evaluate, table } from '../bench/report.js';
import { percentile, pool, summarize } from '../bench/stats.js';

describe('bench stats', () => {
  it('bench - percentiles use the nearest rank, whatever the input order', () => {
    const xs = [10, 1, 9, 2, 8, 3, 7, 4, 6, 5];
    expect(percentile(xs, 50)).toBe(5);
    expect(percentile(xs, 90)).toBe(9);
    expect(percentile(xs, 99)).toBe(10);
    expect(percentile(xs, 0)).toBe(1);
    expect(percentile([], 50)).toBeNaN();
    const s = summarize(xs);
    expect(s).toMatchObject({ count: 10, p50: 5, max: 10, mean: 5.5 });
  });

  it('bench - pool keeps at most N tasks in flight and runs each index once', async () => {
    let inFlight = 0;
    let peak = 0;
    const seen: number[] = [];
    await pool(50, 4, async (i) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setImmediate(r));
      seen.push(i);
      inFlight--;
    });
    expect(peak).toBe(4);
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('bench - pool rejects with the first error and starts no new task after it', async () => {
    const started: number[] = [];
    const run = pool(100, 2, async (i) => {
      started.push(i);
      if (i === 3) throw new Error('boom');
      await new Promise((r) => setImmediate(r));
    });
    await expect(run).rejects.toThrow('boom');
    expect(started.length).toBeLessThan(10);
  });
});

describe('bench report', () => {
  it('bench - a ratio goal compares figure / floor, a figure goal the figure itself', () => {
    const fast = evaluate({ scenario: 'x', figure: 60, unit: 'pairs/s', floor: 100, goal: { on: 'ratio', op: '>=', value: 0.5 } });
    expect(fast.ratio).toBeCloseTo(0.6);
    expect(fast.met).toBe(true);
    expect(evaluate({ scenario: 'x', figure: 40, unit: 'pairs/s', floor: 100, goal: { on: 'ratio', op: '>=', value: 0.5 } }).met).toBe(false);
    expect(evaluate({ scenario: 'x', figure: 26, unit: 'ms', goal: { on: 'figure', op: '<=', value: 25 } }).met).toBe(false);
    // A figure that was not measured never meets its goal.
    expect(evaluate({ scenario: 'x', figure: Number.NaN, unit: 'ms', goal: { on: 'figure', op: '<=', value: 25 } }).met).toBe(false);
    const text = table([fast]);
    expect(text).toContain('0.60x');
    expect(text).toContain('>= 0.5x floor');
  });

  it('bench - smoke sizes are small, explicit knobs win, unknown scenarios are refused', () => {
    const smoke = parseOptions(['--smoke', '--pairs', '7']);
    expect(smoke.sizes.pairs).toBe(7);
    expect(smoke.sizes.soak).toBeLessThan(parseOptions([]).sizes.soak);
    expect(parseOptions(['--only', 'a,E']).only).toEqual(['a', 'e']);
    expect(() => parseOptions(['--only', 'a,z'])).toThrow(/unknown scenario/);
    expect(() => parseOptions(['--pairs', '0'])).toThrow(/--pairs/);
  });
});

describe('bench cpuprofile', () => {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 9, columnNumber: 0 });

  it('bench - categories come from the frame URL', () => {
    expect(categorize(frame('flush', 'file:///r/node_modules/@mikro-orm/core/EntityManager.js'))).toBe('MikroORM');
    expect(categorize(frame('toSQL', 'file:///r/node_modules/knex/lib/raw.js'))).toBe('knex');
    expect(categorize(frame('parse', 'file:///r/node_modules/pg-protocol/dist/parser.js'))).toBe('pg');
    expect(categorize(frame('publish', 'file:///r/node_modules/@nats-io/nats-core/lib/nats.js'))).toBe('nats');
    expect(categorize(frame('write', 'file:///r/node_modules/sonic-boom/index.js'))).toBe('pino');
    expect(categorize(frame('parse', 'file:///r/node_modules/zod/v4/core/parse.js'))).toBe('zod');
    expect(categorize(frame('(garbage collector)', ''))).toBe('GC');
    expect(categorize(frame('emit', 'node:events'))).toBe('node internals');
    expect(categorize(frame('serve', 'file:///r/dist/src/transport/nats.js'))).toBe('ours: src/');
    expect(categorize(frame('x', 'file:///r/dist/subjects/events.js'))).toBe('ours: subjects/');
    expect(categorize(frame('JSONParse', ''))).toBe('V8 builtins / native');
    expect(categorize(frame('writeBuffer', ''))).toBe('I/O writes (native)');
  });

  it('bench - self time of a sample lasts until the next sample; idle is not busy time', () => {
    const profile: CpuProfile = {
      nodes: [
        { id: 1, callFrame: frame('(root)', ''), children: [2, 3, 4] },
        { id: 2, callFrame: frame('flush', 'file:///r/node_modules/@mikro-orm/core/EntityManager.js') },
        { id: 3, callFrame: frame('serve', 'file:///r/dist/src/transport/nats.js') },
        { id: 4, callFrame: frame('(idle)', '') },
      ],
      startTime: 0,
      endTime: 10_000,
      // Samples at 0, 1000, 4000, 5000 us: flush 1 ms, serve 3 ms, flush 1 ms, idle 5 ms.
      samples: [2, 3, 2, 4],
      timeDeltas: [0, 1000, 3000, 1000],
    };
    const s = summarizeProfile(profile);
    expect(s.totalMs).toBeCloseTo(10);
    expect(s.busyMs).toBeCloseTo(5);
    expect(s.categories[0]).toEqual({ category: 'idle', selfMs: 5 });
    expect(s.categories.find((c) => c.category === 'ours: src/')?.selfMs).toBeCloseTo(3);
    expect(s.functions.find((f) => f.name === 'flush')).toMatchObject({ selfMs: 2, location: '@mikro-orm/core/EntityManager.js:10' });
    const text = formatSummary(s, 5);
    expect(text).toMatch(/ours: src\/\s+3 ms\s+60\.0%/);
    expect(text).not.toMatch(/^\s+\S+ ms .*\(idle\)/m);

    // Samples before the service was ready are start-up, reported apart from the rest.
    const after = summarizeProfile(profile, undefined, 1000);
    expect(after.startupMs).toBeCloseTo(1);
    expect(after.busyMs).toBeCloseTo(4);
    expect(after.functions.find((f) => f.name === 'flush')?.selfMs).toBeCloseTo(1);
    expect(formatSummary(after)).toMatch(/^start-up 0\.00 s/);
  });

  it('bench - a native socket write is counted to the library that wrote', () => {
    const profile: CpuProfile = {
      nodes: [
        { id: 1, callFrame: frame('(root)', ''), children: [2] },
        { id: 2, callFrame: frame('query', 'file:///r/node_modules/pg/lib/client.js'), children: [3] },
        { id: 3, callFrame: frame('Writable.write', 'node:internal/streams/writable'), children: [4] },
        { id: 4, callFrame: frame('writeBuffer', '') },
      ],
      startTime: 0,
      endTime: 2000,
      samples: [4, 2],
      timeDeltas: [0, 1000],
    };
    const s = summarizeProfile(profile);
    expect(s.categories).toEqual([
      { category: 'I/O writes: pg', selfMs: 1 },
      { category: 'pg', selfMs: 1 },
    ]);
  });
});
