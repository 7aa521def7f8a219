/**
 * The pure parts of tracing, pretty logs and metrics: trace context parsing and child spans,
 * LOG_PRETTY, the pretty and JSON log formats, and the metrics' scrape-time behaviour.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { createLogger, prettyLogs } from '../../src/log.js';
import { METRIC_NAMES, Metrics } from '../../src/metrics/metrics.js';
import type { EventRow } from '../../src/outbox/event-row.js';
import { parseTraceparent, startRequestTrace, traceIdOf } from '../../src/tracing/trace.js';
import { waitFor } from '../helpers/infra.js';
import { parseExposition, valueOf } from '../helpers/observe.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

describe('tracing - request spans', () => {
  it('tracing - a valid traceparent is the parent: same trace and flags, a new span id', () => {
    for (const flags of ['01', '00']) {
      const t = startRequestTrace(`00-${TRACE}-${PARENT}-${flags}`);
      expect(t.traceId).toBe(TRACE);
      expect(t.parentSpanId).toBe(PARENT);
      expect(t.spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(t.spanId).not.toBe(PARENT);
      expect(t.traceparent).toBe(`00-${TRACE}-${t.spanId}-${flags}`);
    }
    // Two requests of one trace are two spans.
    expect(startRequestTrace(`00-${TRACE}-${PARENT}-01`).spanId).not.toBe(startRequestTrace(`00-${TRACE}-${PARENT}-01`).spanId);
  });

  it('tracing - no or a malformed traceparent starts a new sampled trace', () => {
    const malformed = [
      undefined,
      '',
      'nonsense',
      `00-${'0'.repeat(32)}-${PARENT}-01`, // all-zero trace id
      `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero span id
      `ff-${TRACE}-${PARENT}-01`, // version ff is invalid
      `00-${TRACE.toUpperCase()}-${PARENT}-01`, // upper case is invalid
      `00-${TRACE}-${PARENT}-01-extra`, // version 00 has exactly four parts
    ];
    const ids = new Set<string>();
    for (const header of malformed) {
      expect(parseTraceparent(header), String(header)).toBeUndefined();
      const t = startRequestTrace(header);
      expect(t.parentSpanId).toBeUndefined();
      expect(t.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(t.traceId).not.toBe(TRACE);
      expect(t.traceparent).toBe(`00-${t.traceId}-${t.spanId}-01`);
      ids.add(t.traceId);
    }
    expect(ids.size).toBe(malformed.length);
    expect(traceIdOf(startRequestTrace().traceparent)).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('logs - LOG_PRETTY', () => {
  it('config - LOG_PRETTY is 1/0 (or true/false); unset follows the terminal', () => {
    expect(loadConfig({ LOG_PRETTY: '1' }).logPretty).toBe(true);
    expect(loadConfig({ LOG_PRETTY: 'true' }).logPretty).toBe(true);
    expect(loadConfig({ LOG_PRETTY: '0' }).logPretty).toBe(false);
    expect(loadConfig({}).logPretty).toBeUndefined();
    expect(() => loadConfig({ LOG_PRETTY: 'yes' })).toThrow(ConfigError);
    expect(() => loadConfig({ LOG_PRETTY: 'yes' })).toThrow(/LOG_PRETTY/);
    expect(prettyLogs(undefined, true)).toBe(true);
    expect(prettyLogs(undefined, false)).toBe(false);
    expect(prettyLogs(false, true)).toBe(false);
    expect(prettyLogs(true, false)).toBe(true);
  });

  function capture(pretty: boolean): { log: ReturnType<typeof createLogger>; text: () => string } {
    let out = '';
    const stream = new Writable({
      write(chunk: Buffer, _e, done) {
        out += chunk.toString('utf8');
        done();
      },
    });
    return { log: createLogger('info', stream, pretty), text: () => out };
  }

  it('logs - pretty lines are human-readable, with the fields; JSON otherwise, secrets redacted in both', async () => {
    const fields = { request_id: 'r-1', trace_id: TRACE, config: { gatewayToken: 'secret-value' } };
    const pretty = capture(true);
    pretty.log.info(fields, 'request served');
    await waitFor(() => pretty.text().includes('\n'));
    expect(pretty.text()).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: request served /);
    expect(pretty.text()).toContain('"request_id":"r-1"');
    expect(pretty.text()).toContain(TRACE);
    expect(pretty.text()).not.toContain('secret-value');
    expect(() => JSON.parse(pretty.text())).toThrow();

    const json = capture(false);
    json.log.info(fields, 'request served');
    await new Promise((r) => json.log.flush(r));
    const line = JSON.parse(json.text()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'info', msg: 'request served', request_id: 'r-1', trace_id: TRACE, service: 'lobby' });
    expect(json.text()).not.toContain('secret-value');
  });
});

const row = (over: Partial<EventRow> = {}): EventRow => ({
  id: 1,
  lobbyId: 'L',
  sessionId: null,
  type: 'lobby.updated',
  payload: {},
  targets: [],
  createdAt: new Date(Date.now() - 200),
  traceparent: null,
  ...over,
});

describe('metrics - families', () => {
  it('metrics - a delivery observes its lag; only a JetStream ack of a request origin its latency', async () => {
    const m = new Metrics();
    m.delivered('jetstream', row({ origin: { subject: 'measurement.ready', receivedAt: performance.now() - 300 } }));
    m.delivered('jetstream', row());
    m.delivered('gateway-sink', row({ origin: { subject: 'measurement.ready', receivedAt: performance.now() } }));
    const { samples } = parseExposition((await m.scrape()).body);
    expect(valueOf(samples, `${METRIC_NAMES.publishLag}_count`, { destination: 'jetstream' })).toBe(2);
    expect(valueOf(samples, `${METRIC_NAMES.publishLag}_count`, { destination: 'gateway-sink' })).toBe(1);
    expect(valueOf(samples, `${METRIC_NAMES.publishLag}_sum`, { destination: 'gateway-sink' })).toBeGreaterThanOrEqual(0.2);
    expect(valueOf(samples, `${METRIC_NAMES.broadcastLatency}_count`, { subject: 'measurement.ready' })).toBe(1);
    expect(valueOf(samples, `${METRIC_NAMES.broadcastLatency}_sum`, { subject: 'measurement.ready' })).toBeGreaterThanOrEqual(0.3);
  });

  it('metrics - a failing scrape-time source leaves its gauge empty and the scrape goes on', async () => {
    const m = new Metrics();
    m.setSources({
      sessionsByPhase: async () => {
        throw new Error('database down');
      },
      outboxBacklog: async () => ({ jetstream: 7 }),
      dbPool: () => ({ used: 1, free: 2, pending: 3, max: 20 }),
    });
    m.dbError(Object.assign(new Error('x'), { code: '40P01' }));
    m.dbError(new Error('no code'));
    const { samples, types } = parseExposition((await m.scrape()).body);
    expect(types.get(METRIC_NAMES.sessions)).toBe('gauge');
    expect(samples.filter((s) => s.name === METRIC_NAMES.sessions)).toEqual([]);
    expect(valueOf(samples, METRIC_NAMES.outboxBacklog, { destination: 'jetstream' })).toBe(7);
    expect(valueOf(samples, METRIC_NAMES.dbPool, { state: 'pending' })).toBe(3);
    expect(valueOf(samples, METRIC_NAMES.dbErrors, { code: '40P01' })).toBe(1);
    expect(valueOf(samples, METRIC_NAMES.dbErrors, { code: 'other' })).toBe(1);
  });

  it('metrics - sessions by phase: every phase of an unfinished session, 0 when none is in it', async () => {
    const m = new Metrics();
    m.setSources({ sessionsByPhase: async () => ({ waiting_ready: 2 }) });
    const { samples } = parseExposition((await m.scrape()).body);
    expect(valueOf(samples, METRIC_NAMES.sessions, { phase: 'waiting_ready' })).toBe(2);
    expect(valueOf(samples, METRIC_NAMES.sessions, { phase: 'idle' })).toBe(0);
    expect(valueOf(samples, METRIC_NAMES.sessions, { phase: 'completed' })).toBeUndefined();
  });
});
