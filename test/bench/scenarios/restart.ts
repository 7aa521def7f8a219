/**
 * (e) Restart: N sessions held mid-cycle (held.ts: every microphone ready, the speaker not),
 * the service SIGKILLed and started again (no build). Every speaker then sends its `ready`
 * as soon as the service answers, and the figure is the time from the kill until every
 * session's next broadcast (`measurement.request_audio`) has been received; the start-up
 * time (spawn -> first request answered) is reported beside it.
 */
import { EventName, Subject } from '../../../subjects/index.js';
import { watchBroadcasts } from '../broadcasts.js';
import type { BenchContext, ScenarioResult } from '../context.js';
import { holdSessions } from '../held.js';
import { outboxEmpty } from '../outbox.js';
import { since } from '../stats.js';

const RESUME_TIMEOUT_MS = 120_000;

export async function runRestart(ctx: BenchContext): Promise<ScenarioResult> {
  const n = ctx.opts.sizes.resume;
  let svc = await ctx.startService();
  const watch = await watchBroadcasts(ctx.env.nc, ctx.env.prefix);
  try {
    ctx.log(`(e) holding ${n} sessions mid-cycle...`);
    const held = await holdSessions(ctx.call, 'e-', n, 32);
    const bySession = new Map(held.map((h) => [h.sessionId, h]));
    // Let the setup's broadcasts go out: the restart should not inherit a backlog.
    const db = ctx.pgPool(1);
    await outboxEmpty(db).finally(() => db.end());

    const resumedAt = new Map<string, number>();
    let allResumed!: () => void;
    const done = new Promise<void>((resolve) => (allResumed = resolve));
    watch.listen((e, at) => {
      if (e.event !== EventName['measurement.request_audio'] || !e.session_id || !bySession.has(e.session_id)) return;
      if (!resumedAt.has(e.session_id)) resumedAt.set(e.session_id, at);
      if (resumedAt.size === n) allResumed();
    });

    ctx.log(`(e) SIGKILL and start again...`);
    const t0 = performance.now();
    await svc.kill();
    svc = await ctx.startService();
    const ready = since(t0);
    const refused: string[] = [];
    let lastReply = 0;
    await Promise.all(
      held.map(async (h) => {
        try {
          const r = await ctx.call.call(Subject['measurement.ready'], h.speaker, { session_id: h.sessionId }, RESUME_TIMEOUT_MS);
          if (r.status !== 'accepted') refused.push(`${h.sessionId}: ${r.status}`);
        } catch (err) {
          refused.push(`${h.sessionId}: ${err instanceof Error ? err.message : String(err)}`);
        }
        lastReply = Math.max(lastReply, since(t0));
      }),
    );
    const timer = setTimeout(allResumed, RESUME_TIMEOUT_MS);
    await done;
    clearTimeout(timer);
    const missing = n - resumedAt.size;
    const resume = missing === 0 ? Math.max(...resumedAt.values()) - t0 : Number.NaN;
    if (refused.length || missing) {
      throw new Error(`${refused.length} steps refused, ${missing} sessions without their next broadcast; first: ${refused[0] ?? '(none refused)'}`);
    }
    return {
      rows: [
        { scenario: `(e) resume ${n} sessions after SIGKILL`, figure: resume / 1000, unit: 's', goal: { on: 'figure', op: '<=', value: 5 } },
        { scenario: '(e) start-up (spawn -> first reply)', figure: svc.startupMs / 1000, unit: 's' },
      ],
      details: { sessions: n, killToReadyMs: ready, startupMs: svc.startupMs, lastStepReplyMs: lastReply, killToAllBroadcastsMs: resume, serviceLogs: svc.logCounts() },
    };
  } finally {
    watch.close();
    await svc.stop();
  }
}
