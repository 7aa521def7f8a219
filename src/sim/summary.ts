/**
 * The simulator's figures: outcomes, per-step latency percentiles, create_session reply times,
 * protocol violations and throughput, computed from the measurements' results (pure), and the
 * table the CLI prints.
 */
import type { Violation } from './checks.js';
import type { MeasurementResult } from './measurement.js';
import { STEPS, distribution, type Distribution, type StepName, type StepTimings } from './timings.js';

export interface SimulationSummary {
  sessions: { total: number; completed: number; failed: number; stalled: number; withDropOut: number };
  /** Reasons of failed and stalled sessions (device ids elided), most frequent first. */
  failures: Array<{ outcome: 'failed' | 'stalled'; reason: string; count: number }>;
  /** Step sent -> resulting command received (ms), for the send that completed each gate. */
  steps: Record<StepName, Distribution>;
  /** Steps whose resulting command never came. */
  unresolvedSteps: number;
  createSessionReply: Distribution;
  /** Sessions whose start_speaker the app's 500 ms timer skipped (reply too late). */
  startSpeakerSkipped: number;
  violations: { count: number; examples: Violation[] };
  warnings: string[];
  requests: { total: number; duplicates: number; refused: number; refusedByCode: Record<string, number> };
  throughput: { requestsPerSecond: number; sessionsPerMinute: number };
  wallTimeSeconds: number;
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

export function summarize(results: readonly MeasurementResult[], timings: StepTimings, wallMs: number): SimulationSummary {
  const count = (o: MeasurementResult['outcome']) => results.filter((r) => r.outcome === o).length;
  const failures = new Map<string, { outcome: 'failed' | 'stalled'; reason: string; count: number }>();
  for (const r of results) {
    if (r.outcome === 'completed') continue;
    const reason = (r.reason ?? 'unknown').replace(UUID, '<id>');
    const key = `${r.outcome}|${reason}`;
    const f = failures.get(key) ?? { outcome: r.outcome, reason, count: 0 };
    f.count++;
    failures.set(key, f);
  }
  const latencies = timings.stepLatencies();
  const violations = results.flatMap((r) => r.violations);
  const examples = new Map<string, Violation>();
  for (const v of violations) {
    const key = `${v.source}|${v.field}`;
    if (!examples.has(key)) examples.set(key, { source: v.source, field: v.field, problem: v.problem });
  }
  const errors = results.flatMap((r) => r.errors);
  const refusedByCode: Record<string, number> = {};
  for (const e of errors) refusedByCode[e.code] = (refusedByCode[e.code] ?? 0) + 1;
  const total = results.reduce((n, r) => n + r.requests, 0);
  const seconds = wallMs / 1000;
  return {
    sessions: {
      total: results.length,
      completed: count('completed'),
      failed: count('failed'),
      stalled: count('stalled'),
      withDropOut: results.filter((r) => r.dropOut?.happened).length,
    },
    failures: [...failures.values()].sort((a, b) => b.count - a.count),
    steps: Object.fromEntries(STEPS.map((s) => [s, distribution(latencies[s])])) as Record<StepName, Distribution>,
    unresolvedSteps: timings.unresolved().length,
    createSessionReply: distribution(timings.createSessionReplyMs),
    startSpeakerSkipped: results.filter((r) => r.startSpeakerSkipped).length,
    violations: { count: violations.length, examples: [...examples.values()].slice(0, 10) },
    warnings: [...new Set(results.flatMap((r) => r.warnings))],
    requests: { total, duplicates: results.reduce((n, r) => n + r.duplicates, 0), refused: errors.length, refusedByCode },
    throughput: {
      requestsPerSecond: seconds > 0 ? Math.round((total / seconds) * 10) / 10 : 0,
      sessionsPerMinute: seconds > 0 ? Math.round((count('completed') / seconds) * 600) / 10 : 0,
    },
    wallTimeSeconds: Math.round(seconds * 100) / 100,
  };
}

/** The resulting command of each step, for the table. */
const STEP_LABELS: Record<StepName, string> = {
  start_speaker: 'start_speaker -> start_measurement',
  ready: 'ready -> request_audio',
  speaker_audio_ready: 'speaker_audio_ready -> start_recording',
  recording_started: 'recording_started -> start_playback',
  playback_complete: 'playback_complete -> stop_recording',
  recording_uploaded: 'recording_uploaded -> speaker/session complete',
};

/** Left-aligns the first column and right-aligns the others. */
export function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd());
}

const ms = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(1));

export function formatSummary(s: SimulationSummary): string {
  const out: string[] = [];
  const { sessions: n } = s;
  out.push(
    `Sessions: ${n.total}   completed ${n.completed}   failed ${n.failed}   stalled ${n.stalled}` +
      (n.withDropOut ? `   (${n.withDropOut} with a device that dropped out)` : ''),
  );
  for (const f of s.failures) out.push(`  ${f.count} x ${f.outcome}: ${f.reason}`);
  out.push('', 'Step latency (step sent -> resulting command received), ms');
  const rows = [['step', 'n', 'p50', 'p95', 'p99', 'max']];
  for (const step of STEPS) {
    const d = s.steps[step];
    rows.push([STEP_LABELS[step], String(d.count), ms(d.p50), ms(d.p95), ms(d.p99), ms(d.max)]);
  }
  const c = s.createSessionReply;
  rows.push(['create_session reply', String(c.count), ms(c.p50), ms(c.p95), ms(c.p99), ms(c.max)]);
  out.push(...table(rows).map((l) => `  ${l}`));
  if (s.unresolvedSteps) out.push(`  ${s.unresolvedSteps} steps never got their resulting command`);
  out.push('');
  out.push(`start_speaker skipped (create_session reply later than 500 ms): ${s.startSpeakerSkipped}`);
  out.push(`Protocol violations: ${s.violations.count}`);
  for (const v of s.violations.examples) out.push(`  ${v.source} ${v.field}: ${v.problem}`);
  if (s.warnings.length) out.push(`Warnings: ${s.warnings.join('; ')}`);
  const refused = Object.entries(s.requests.refusedByCode).map(([code, k]) => `${code} ${k}`).join(', ');
  out.push(
    `Requests: ${s.requests.total} (${s.requests.duplicates} duplicate sends), refused ${s.requests.refused}` +
      (refused ? ` (${refused})` : ''),
  );
  out.push(
    `Throughput: ${s.throughput.requestsPerSecond} requests/s, ${s.throughput.sessionsPerMinute} sessions/min; wall time ${s.wallTimeSeconds} s`,
  );
  return out.join('\n');
}
