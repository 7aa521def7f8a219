/**
 * (c) Soak: N measurements (1 speaker x 4 microphones: 5N app-like phones of src/sim) started
 * together, each from lobby creation to `session_complete`. Reports completed and failed (with
 * reasons), wall time, step -> broadcast latency and create_session latency under that load.
 * The speaker "plays" for a short time (--playback-ms); deadlines are the contract's longest.
 */
import { Measurement, StepTimings, progressLines, snapshot, summarize as simSummary, type MeasurementResult } from '../../../src/sim/index.js';
import type { BenchContext, ScenarioResult } from '../context.js';
import { benchPhones, failureNote, simDetails, simErrors } from '../phones.js';
import { since, summarize } from '../stats.js';

const PROGRESS_EVERY_MS = 10_000;

export async function runSoak(ctx: BenchContext): Promise<ScenarioResult> {
  const { soak: n, playbackMs, startSpeakerDelayMs } = ctx.opts.sizes;
  // A full soak on today's 2 cores takes many minutes; a session that makes no progress at
  // all is given up (stalled) at this.
  const timeoutMs = ctx.opts.smoke ? 60_000 : 60 * 60_000;
  const svc = await ctx.startService();
  const phones = benchPhones(ctx.env.nc, ctx.env.prefix, 300_000);
  try {
    ctx.log(`(c) ${n} sessions (${5 * n} devices) at once...`);
    const timings = new StepTimings();
    const runs = Array.from({ length: n }, () => new Measurement(phones.transport, { speakers: 1, microphones: 4, playbackMs, startSpeakerDelayMs, timings, timeoutMs }));
    const t0 = performance.now();
    let last = { at: t0, requests: 0 };
    const progress = setInterval(() => {
      const now = performance.now();
      const s = snapshot(runs, phones.nats.counters, now - t0);
      const rate = ((s.requests - last.requests) * 1000) / (now - last.at);
      last = { at: now, requests: s.requests };
      for (const line of progressLines(s, rate)) ctx.log(`(c) ${line.trim()}`);
    }, PROGRESS_EVERY_MS);
    let results: MeasurementResult[];
    try {
      results = await Promise.all(runs.map((m) => m.run()));
    } finally {
      clearInterval(progress);
    }
    const wallMs = since(t0);
    const sim = simSummary(results, timings, wallMs);
    const step = summarize(Object.values(timings.stepLatencies()).flat());
    const create = summarize(timings.createSessionReplyMs);
    const failed = sim.sessions.failed + sim.sessions.stalled;
    return {
      rows: [
        {
          scenario: `(c) soak: sessions not completed, of ${n}`,
          figure: failed,
          unit: '',
          goal: { on: 'figure', op: '<=', value: 0 },
          note: failureNote(sim),
        },
        { scenario: '(c) soak: wall time', figure: wallMs / 1000, unit: 's' },
        { scenario: '(c) soak: step -> broadcast p50', figure: step.p50, unit: 'ms' },
        { scenario: '(c) soak: step -> broadcast p99', figure: step.p99, unit: 'ms' },
        { scenario: '(c) soak: create_session p50', figure: create.p50, unit: 'ms' },
        { scenario: '(c) soak: create_session p99', figure: create.p99, unit: 'ms' },
      ],
      details: {
        concurrent: n,
        devices: 5 * n,
        playbackMs,
        wallMs,
        step,
        createSession: create,
        ...simDetails(sim),
        transport: phones.nats.counters,
        serviceLogs: svc.logCounts(),
      },
      errors: simErrors(sim),
    };
  } finally {
    await phones.close();
    await svc.stop();
  }
}
