/**
 * Step timings: for every step a phone sends, when the command it leads to arrived. One
 * recorder is shared by all phones of a simulation, because the command a step leads to often
 * arrives at another phone (a microphone's `ready` ends in `request_audio` at the speaker).
 */
import { EventName, StepStatus } from '../../subjects/index.js';

/** The steps a phone sends during a session (short names of their subjects). */
export const STEPS = [
  'start_speaker',
  'ready',
  'speaker_audio_ready',
  'recording_started',
  'playback_complete',
  'recording_uploaded',
] as const;
export type StepName = (typeof STEPS)[number];

/** The command(s) each step leads to; the first of them to arrive ends the step's wait. */
export const RESULT_OF: Record<StepName, readonly EventName[]> = {
  start_speaker: [EventName['measurement.start_measurement']],
  ready: [EventName['measurement.request_audio']],
  speaker_audio_ready: [EventName['measurement.start_recording']],
  recording_started: [EventName['measurement.start_playback']],
  playback_complete: [EventName['measurement.stop_recording']],
  // The last upload of a cycle ends it: speaker_complete, then (auto-advance) the next
  // start_measurement, or session_complete after the last speaker.
  recording_uploaded: [
    EventName['measurement.speaker_complete'],
    EventName['measurement.start_measurement'],
    EventName['measurement.session_complete'],
  ],
};

export interface StepRecord {
  step: StepName;
  sessionId: string;
  deviceId: string;
  /** `performance.now()` when the step was sent (after any jitter). */
  sentAt: number;
  /** The reply's `status` (`accepted`, `duplicate`, `not_required`) or the error code. */
  status?: string;
  /** The command that ended the wait, and when the first phone received it. */
  result?: EventName;
  resultAt?: number;
}

export class StepTimings {
  /** Every step sent (first sends only; a duplicate send is not a new step). */
  readonly records: StepRecord[] = [];
  /** `create_session` reply latencies (ms). */
  readonly createSessionReplyMs: number[] = [];
  private readonly pending = new Map<string, StepRecord[]>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Notes a step being sent; the caller fills in `status` when its reply arrives. */
  sent(step: StepName, sessionId: string, deviceId: string): StepRecord {
    const rec: StepRecord = { step, sessionId, deviceId, sentAt: this.now() };
    this.records.push(rec);
    const list = this.pending.get(sessionId);
    if (list) list.push(rec);
    else this.pending.set(sessionId, [rec]);
    return rec;
  }

  /** A phone received `event` of `sessionId`: ends the wait of every step it results from. */
  received(event: EventName, sessionId: string): void {
    const list = this.pending.get(sessionId);
    if (!list) return;
    const at = this.now();
    const rest = list.filter((rec) => {
      if (!RESULT_OF[rec.step].includes(event)) return true;
      rec.result = event;
      rec.resultAt = at;
      return false;
    });
    if (rest.length) this.pending.set(sessionId, rest);
    else this.pending.delete(sessionId);
  }

  /** Forgets the waits of a finished session (its records stay). */
  finish(sessionId: string): void {
    this.pending.delete(sessionId);
  }

  /**
   * Latencies per step, counting for each resulting command only the send that completed the
   * gate (the last accepted one): that is the service's own time from step to command, while
   * earlier senders also waited for the others.
   */
  stepLatencies(): Record<StepName, number[]> {
    const out = Object.fromEntries(STEPS.map((s) => [s, [] as number[]])) as Record<StepName, number[]>;
    const gates = new Map<string, StepRecord>();
    for (const rec of this.records) {
      if (rec.resultAt === undefined || rec.status === StepStatus.enum.not_required || rec.status === StepStatus.enum.duplicate) continue;
      const key = `${rec.sessionId}|${rec.step}|${rec.resultAt}`;
      const best = gates.get(key);
      if (!best || rec.sentAt > best.sentAt) gates.set(key, rec);
    }
    for (const rec of gates.values()) out[rec.step].push(rec.resultAt! - rec.sentAt);
    return out;
  }

  /** Steps whose resulting command never arrived (a stall, a drop-out, a failed cycle). */
  unresolved(): StepRecord[] {
    return this.records.filter((r) => r.resultAt === undefined);
  }
}

/** The `p`th percentile (0-100, nearest rank) of `values`; undefined when empty. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((Math.min(Math.max(p, 0), 100) / 100) * sorted.length);
  return sorted[Math.max(rank, 1) - 1];
}

export interface Distribution {
  count: number;
  p50?: number;
  p95?: number;
  p99?: number;
  max?: number;
}

/** Count, p50/p95/p99 and max of `values` (ms, rounded to 0.1). */
export function distribution(values: readonly number[]): Distribution {
  const r = (v: number | undefined) => (v === undefined ? undefined : Math.round(v * 10) / 10);
  const sorted = [...values].sort((a, b) => a - b);
  return {
    count: values.length,
    p50: r(percentile(sorted, 50)),
    p95: r(percentile(sorted, 95)),
    p99: r(percentile(sorted, 99)),
    max: r(sorted[sorted.length - 1]),
  };
}
