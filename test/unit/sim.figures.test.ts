/**
 * The simulator's pure parts: percentiles, step timings (which send a latency counts), the
 * app's field checks, the summary and the progress lines.
 */
import { describe, expect, it } from 'vitest';
import { EventName, Subject } from '../../subjects/index.js';
import { checkPush, checkReply } from '../../src/sim/checks.js';
import type { MeasurementResult } from '../../src/sim/measurement.js';
import { narrate } from '../../src/sim/narration.js';
import { progressLines } from '../../src/sim/progress.js';
import { formatSummary, summarize } from '../../src/sim/summary.js';
import { StepTimings, distribution, percentile } from '../../src/sim/timings.js';

describe('sim figures - percentiles', () => {
  it('sim figures - nearest-rank percentiles of unsorted values', () => {
    const values = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
    expect(percentile(values, 50)).toBe(5);
    expect(percentile(values, 95)).toBe(10);
    expect(percentile(values, 10)).toBe(1);
    expect(percentile(values, 0)).toBe(1);
    expect(percentile([], 50)).toBeUndefined();
    expect(distribution([2.04, 1, 3])).toEqual({ count: 3, p50: 2, p95: 3, p99: 3, max: 3 });
    expect(distribution([])).toEqual({ count: 0, p50: undefined, p95: undefined, p99: undefined, max: undefined });
  });
});

describe('sim figures - step timings', () => {
  it('sim figures - a gate counts the last accepted send; earlier, not_required and duplicate sends do not', () => {
    let now = 0;
    const t = new StepTimings(() => now);
    const early = t.sent('ready', 'S', 'mic-1');
    early.status = 'accepted';
    now = 30;
    const other = t.sent('ready', 'S', 'speaker-2');
    other.status = 'not_required';
    now = 10;
    const last = t.sent('ready', 'S', 'speaker-1');
    last.status = 'accepted';
    now = 12;
    t.sent('recording_started', 'S', 'mic-1').status = 'accepted';
    now = 45;
    t.received(EventName['measurement.request_audio'], 'S');
    t.received(EventName['measurement.request_audio'], 'other-session');
    // ready sent at 10 (the last accepted) -> request_audio at 45.
    expect(t.stepLatencies().ready).toEqual([35]);
    expect(early.resultAt).toBe(45);
    // recording_started waits for start_playback, which did not come.
    expect(t.unresolved().map((r) => r.step)).toEqual(['recording_started']);
    now = 50;
    t.received(EventName['measurement.start_playback'], 'S');
    expect(t.stepLatencies().recording_started).toEqual([38]);
    expect(t.unresolved()).toEqual([]);
  });

  it('sim figures - the last upload ends at whichever of its commands comes first', () => {
    let now = 0;
    const t = new StepTimings(() => now);
    t.sent('recording_uploaded', 'S', 'mic').status = 'accepted';
    now = 7;
    t.received(EventName['measurement.speaker_complete'], 'S');
    now = 9;
    t.received(EventName['measurement.session_complete'], 'S');
    expect(t.stepLatencies().recording_uploaded).toEqual([7]);
  });
});

describe('sim figures - the app\'s checks', () => {
  it('sim figures - replies: ids must be strings, participants typed, no error key', () => {
    expect(checkReply(Subject['lobby.create'], { lobby_id: 'L', code: 'C', admin_device_id: 'A' })).toEqual([]);
    expect(checkReply(Subject['lobby.create'], { lobby_id: 7, code: 'C' }).map((v) => v.field)).toEqual(['lobby_id', 'admin_device_id']);
    const lobby = { lobby_id: 'L', participants: [{ device_id: 'a', role: 'none' }, { device_id: 'b', role: null }] };
    expect(checkReply(Subject['lobby.get'], lobby).map((v) => v.field)).toEqual(['participants.1.role']);
    expect(checkReply(Subject['lobby.join'], { lobby_id: 'L', participants: [], error: null })).toEqual([]);
    expect(checkReply(Subject['role.assign'], { ok: true, error: 'x' }).map((v) => v.field)).toEqual(['error']);
    // audio_duration_seconds may be absent (the app then assumes 15), but not a string.
    expect(checkReply(Subject['measurement.create_session'], { session_id: 'S' })).toEqual([]);
    expect(checkReply(Subject['measurement.create_session'], { session_id: 'S', audio_duration_seconds: '15' })).toHaveLength(1);
    expect(checkReply(Subject['lobby.get'], [])).toEqual([{ source: 'reply lobby.get', field: '', problem: 'reply is not an object' }]);
  });

  it('sim figures - pushes: session ids, slot ids, integer counts, list of completed speakers', () => {
    expect(checkPush(EventName['measurement.request_audio'], { audio_url: 'u' }).map((v) => v.field)).toEqual(['session_id']);
    expect(checkPush(EventName['measurement.stop_recording'], { session_id: 'S', speaker_slot_id: 'x' }).map((v) => v.field)).toEqual(['upload_endpoint']);
    expect(checkPush(EventName['measurement.phase_update'], { session_id: 'S', current_speaker_index: 0.5, total_speakers: 1, completed_speakers: 0 }).map((v) => v.field)).toEqual(['current_speaker_index']);
    expect(checkPush(EventName['measurement.session_complete'], { session_id: 'S', completed_speakers: 2 })).toHaveLength(1);
    expect(checkPush(EventName['measurement.session_complete'], { session_id: 'S', completed_speakers: ['speaker-1'] })).toEqual([]);
    expect(checkPush(EventName['lobby.step_update'], { step_index: '2' })).toHaveLength(1);
    expect(checkPush(EventName['lobby.updated'], 'x' as never)).toHaveLength(1);
  });
});

function result(over: Partial<MeasurementResult>, timings: StepTimings): MeasurementResult {
  return {
    outcome: 'completed',
    durationMs: 1000,
    startSpeakerSkipped: false,
    violations: [],
    warnings: [],
    errors: [],
    requests: 50,
    duplicates: 0,
    timings,
    ...over,
  };
}

describe('sim figures - summary and progress', () => {
  it('sim figures - outcomes, reasons without device ids, throughput', () => {
    const t = new StepTimings();
    t.createSessionReplyMs.push(20, 40, 600);
    const id = (n: number) => `0000000${n}-1111-4222-8333-444444444444`;
    const results = [
      result({}, t),
      result({ outcome: 'failed', reason: `admin: start_speaker skipped`, startSpeakerSkipped: true }, t),
      result({ outcome: 'stalled', reason: `waiting for ${id(1)}`, dropOut: { deviceId: id(1), label: 'mic-2', afterSteps: 1, happened: true } }, t),
      result({ outcome: 'stalled', reason: `waiting for ${id(2)}`, violations: [{ deviceId: 'd', source: 'push x', field: 'f', problem: 'p' }] }, t),
    ];
    const s = summarize(results, t, 30_000);
    expect(s.sessions).toEqual({ total: 4, completed: 1, failed: 1, stalled: 2, withDropOut: 1 });
    expect(s.failures).toEqual([
      { outcome: 'stalled', reason: 'waiting for <id>', count: 2 },
      { outcome: 'failed', reason: 'admin: start_speaker skipped', count: 1 },
    ]);
    expect(s.startSpeakerSkipped).toBe(1);
    expect(s.createSessionReply).toMatchObject({ count: 3, p50: 40, max: 600 });
    expect(s.violations).toEqual({ count: 1, examples: [{ source: 'push x', field: 'f', problem: 'p' }] });
    expect(s.throughput).toEqual({ requestsPerSecond: 6.7, sessionsPerMinute: 2 });
    const text = formatSummary(s);
    expect(text).toContain('Sessions: 4   completed 1   failed 1   stalled 2');
    expect(text).toMatch(/create_session reply\s+3\s+40\.0\s+600\.0\s+600\.0\s+600\.0/);
  });

  it('sim figures - progress lines count sessions by stage', () => {
    const lines = progressLines(
      { elapsedMs: 1500, running: { waiting_ready: 2, lobby: 1 }, completed: 3, failed: 1, stalled: 0, errors: 2, requests: 10 },
      12.4,
    );
    expect(lines).toEqual([
      '[1.5 s] running 3: lobby 1 | waiting_ready 2',
      '  completed 3  failed 1  stalled 0  refused requests 2  12 req/s',
    ]);
  });

  it('sim figures - the narration shows the measurement and leaves out the lobby chatter', () => {
    const sent = (name: string, data: Record<string, unknown> = {}) => ({ direction: 'sent' as const, name, data });
    const got = (name: string, data: Record<string, unknown> = {}) => ({ direction: 'received' as const, name, data });
    expect(narrate(0.5, 'admin', sent(Subject['measurement.start_speaker']), true)).toBe('   0.500 s  admin      -> measurement.start_speaker');
    expect(narrate(1, 'mic-2', got(EventName['measurement.start_measurement'], { current_speaker_slot_id: 'speaker-1', attempt: 1 }), false)).toBe(
      '   1.000 s  mic-2      <- measurement.start_measurement (speaker-1, attempt 1)',
    );
    expect(narrate(1, 'admin', got(EventName['measurement.phase_update'], { phase: 'playing' }), true)).toBe('   1.000 s  admin         phase playing');
    expect(narrate(1, 'mic-2', got(EventName['measurement.phase_update'], { phase: 'playing' }), false)).toBeUndefined();
    expect(narrate(1, 'mic-2', sent(Subject['lobby.get']), false)).toBeUndefined();
    expect(narrate(1, 'mic-2', got(EventName['lobby.updated']), false)).toBeUndefined();
  });
});
