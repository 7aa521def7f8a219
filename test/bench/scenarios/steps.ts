/**
 * (b) Step -> broadcast latency with N concurrent sessions (1 speaker, 4 microphones each, the
 * app-like phones of src/sim), each running R measurements one after the other (a fresh lobby
 * each time, as a group of users would). A step's latency runs from the step request sent to
 * the command it leads to received (the last `ready` -> `request_audio`, ...: src/sim's
 * StepTimings, counting the send that completed each gate); all steps are pooled into one
 * distribution. `create_session` reply latency is reported under the same load.
 *
 * Floor, same run, same concurrency: a bare NATS echo round trip plus one bare transaction
 * (floors.ts), measured separately once the sessions are done (the service then idle), summed.
 */
import { StepTimings, runMeasurement, summarize as simSummary, type MeasurementResult } from '../../../src/sim/index.js';
import type { BenchContext, ScenarioResult } from '../context.js';
import { echoFloor, stepTxFloor } from '../floors.js';
import { benchPhones, failureNote, simDetails, simErrors } from '../phones.js';
import { since, summarize } from '../stats.js';

export async function runSteps(ctx: BenchContext): Promise<ScenarioResult> {
  const { sessions, rounds, playbackMs, startSpeakerDelayMs } = ctx.opts.sizes;
  const svc = await ctx.startService();
  const phones = benchPhones(ctx.env.nc, ctx.env.prefix, 60_000);
  const db = ctx.pgPool(sessions);
  try {
    const measure = (timings: StepTimings) =>
      runMeasurement(phones.transport, { speakers: 1, microphones: 4, playbackMs, startSpeakerDelayMs, timings, timeoutMs: 120_000 });
    // Warm-up (not counted): JIT, connection pools, the first lobbies. A smoke run only
    // checks that the scenario runs, so it skips it.
    if (!ctx.opts.smoke) await Promise.all(Array.from({ length: Math.min(sessions, 4) }, () => measure(new StepTimings())));

    ctx.log(`(b) ${sessions} sessions at once, ${rounds} measurements each...`);
    const timings = new StepTimings();
    const results: MeasurementResult[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: sessions }, async () => {
        for (let r = 0; r < rounds; r++) results.push(await measure(timings));
      }),
    );
    const wallMs = since(t0);
    const sim = simSummary(results, timings, wallMs);
    const step = summarize(Object.values(timings.stepLatencies()).flat());
    const create = summarize(timings.createSessionReplyMs);

    const floorCount = ctx.opts.smoke ? 200 : 2000;
    ctx.log(`(b) floors: ${floorCount} NATS echoes and ${floorCount} bare step transactions, ${sessions} at once...`);
    const echo = await echoFloor(ctx.env.nc, `${ctx.env.prefix}.bench.echo`, sessions, floorCount);
    const tx = await stepTxFloor(db, sessions, floorCount);
    return {
      rows: [
        {
          scenario: `(b) step -> broadcast p50, ${sessions} sessions`,
          figure: step.p50,
          unit: 'ms',
          floor: echo.p50 + tx.p50,
          goal: { on: 'ratio', op: '<=', value: 3 },
          note: failureNote(sim),
        },
        {
          scenario: `(b) step -> broadcast p99, ${sessions} sessions`,
          figure: step.p99,
          unit: 'ms',
          floor: echo.p99 + tx.p99,
          goal: { on: 'figure', op: '<=', value: 25 },
          note: `floor = NATS echo p50 ${echo.p50.toFixed(2)} / p99 ${echo.p99.toFixed(2)} ms + one transaction p50 ${tx.p50.toFixed(2)} / p99 ${tx.p99.toFixed(2)} ms`,
        },
        { scenario: '(b) create_session p99 under that load', figure: create.p99, unit: 'ms', goal: { on: 'figure', op: '<=', value: 100 } },
      ],
      details: {
        concurrent: sessions,
        rounds,
        playbackMs,
        wallMs,
        step,
        createSession: create,
        floor: { echo, transaction: tx },
        ...simDetails(sim),
        transport: phones.nats.counters,
        serviceLogs: svc.logCounts(),
      },
      errors: simErrors(sim),
    };
  } finally {
    await db.end();
    await phones.close();
    await svc.stop();
  }
}
