/**
 * The session timeline model (src/timeline/model.ts) and its two renderings, on hand-made
 * sessions: columns, the order of steps and broadcasts (same-millisecond ties included), marks,
 * and that the terminal chart has colour codes only when asked and the SVG escapes every text.
 */
import { describe, expect, it } from 'vitest';
import { EventName, SessionFailure, SessionTimeline, type TimelineRow } from '../../subjects/index.js';
import type { Session } from '../../src/measurement/model.js';
import { timeline, type EventInput, type StepInput } from '../../src/timeline/model.js';
import { esc, renderSvg } from '../../src/timeline/svg.js';
import { renderText } from '../../src/timeline/text.js';

const T0 = Date.parse('2026-11-30T10:00:00.000Z');
const SPK = 'aaaaaaaa-0000-4000-8000-000000000001';
const MIC1 = 'bbbbbbbb-0000-4000-8000-000000000002';
const MIC2 = 'cccccccc-0000-4000-8000-000000000003';
const ADMIN = 'dddddddd-0000-4000-8000-000000000004';
const GUEST = 'eeeeeeee-0000-4000-8000-000000000005';

function session(over: Partial<Session> = {}): Session {
  return {
    session_id: '11111111-2222-4333-8444-555555555555',
    job_id: 'job-1',
    lobby_id: '99999999-2222-4333-8444-555555555555',
    state: 'running',
    phase: 'waiting_ready',
    speakers: [{ device_id: SPK, slot_id: 'speaker-1', slot_label: 'Loudspeaker 1' }],
    microphones: [
      { device_id: MIC1, slot_id: 'microphone-1' },
      { device_id: MIC2, slot_id: 'microphone-2', slot_label: 'Kitchen' },
    ],
    current_speaker_index: 0,
    attempt: 1,
    completed_speakers: [],
    recordings: [],
    audio_hash: null,
    signal_duration_seconds: 15,
    timeouts: { ready_ms: 100, audio_ms: 100, recording_start_ms: 100, playback_ms: 100, upload_ms: 100 },
    phase_deadline_at: null,
    cycle: { ready: [], audio_ready: false, recording_started: [], playback_complete: false, uploaded: {} },
    disconnected: {},
    created_at: T0,
    updated_at: T0,
    ...over,
  };
}

let stepId = 0;
const step = (at: number, name: string, device: string | null, before: string, after: string, detail: StepInput['detail'] = null): StepInput => ({
  id: ++stepId,
  atMs: T0 + at,
  step: name,
  device_id: device,
  phase_before: before,
  phase_after: after,
  detail,
});
let eventId = 100;
const event = (at: number, type: EventName, targets: string[], payload: Record<string, unknown> = {}): EventInput => ({
  id: ++eventId,
  type,
  payload,
  targets,
  createdMs: T0 + at,
});
const phaseUpdate = (at: number, phase: string, targets = [SPK, MIC1, MIC2]) => event(at, EventName['measurement.phase_update'], targets, { phase });
const names = (rows: TimelineRow[]) => rows.map((r) => (r.kind === 'step' ? r.step : `#${r.id}`));

describe('timeline model - columns', () => {
  it('timeline - speakers, then microphones, then others in order of appearance; labels from slots', () => {
    const t = timeline({
      session: session(),
      steps: [step(2, 'create_session', ADMIN, 'idle', 'idle')],
      events: [event(5, EventName['measurement.error'], [SPK, MIC1, MIC2, ADMIN, GUEST], { error_code: 'timeout' })],
    });
    expect(t.columns.map((c) => [c.role, c.name, c.short_id, c.admin])).toEqual([
      ['speaker', 'Loudspeaker 1', 'aaaaaaaa', false],
      ['microphone', 'microphone-1', 'bbbbbbbb', false],
      ['microphone', 'Kitchen', 'cccccccc', false],
      ['other', 'admin', 'dddddddd', true],
      ['other', 'device', 'eeeeeeee', false],
    ]);
    expect(t.columns[2]!.label).toBe('Kitchen (cccccccc)');
    expect(SessionTimeline.parse(t)).toEqual(t);
  });

  it('timeline - an admin who is a microphone keeps its microphone column, marked admin', () => {
    const t = timeline({ session: session(), steps: [step(1, 'create_session', MIC1, 'idle', 'idle')], events: [] });
    expect(t.columns.map((c) => c.admin)).toEqual([false, true, false]);
    expect(t.columns).toHaveLength(3);
  });
});

describe('timeline model - order', () => {
  it('timeline - each batch of broadcasts follows the step that caused it, ties in the same millisecond included', () => {
    const steps = [
      step(0, 'create_session', ADMIN, 'idle', 'idle'),
      step(10, 'start_speaker', ADMIN, 'idle', 'waiting_ready'),
      // A ready that broadcasts nothing, then the last ready in the same millisecond as its broadcasts.
      step(20, 'ready', SPK, 'waiting_ready', 'waiting_ready'),
      step(20, 'ready', MIC1, 'waiting_ready', 'waiting_ready'),
      step(21, 'ready', MIC2, 'waiting_ready', 'speaker_downloading'),
      // A step decided in the millisecond its predecessor's broadcasts were written.
      step(30, 'speaker_audio_ready', SPK, 'speaker_downloading', 'starting_recording'),
      step(30, 'recording_started', MIC1, 'starting_recording', 'starting_recording'),
    ];
    const events = [
      event(10, EventName['measurement.start_measurement'], [SPK, MIC1, MIC2]),
      phaseUpdate(10, 'waiting_ready'),
      event(21, EventName['measurement.request_audio'], [SPK]),
      phaseUpdate(21, 'speaker_downloading'),
      event(30, EventName['measurement.start_recording'], [MIC1, MIC2]),
      phaseUpdate(30, 'starting_recording'),
    ];
    const t = timeline({ session: session(), steps, events });
    const [e1, e2, e3, e4, e5, e6] = events.map((e) => `#${e.id}`);
    expect(names(t.rows)).toEqual([
      'create_session',
      'start_speaker', e1, e2,
      'ready', 'ready',
      'ready', e3, e4,
      'speaker_audio_ready', e5, e6,
      'recording_started',
    ]);
    // Phases: after each step, and carried over to its broadcasts.
    expect(t.rows.map((r) => r.phase)).toEqual([
      'idle', 'waiting_ready', 'waiting_ready', 'waiting_ready', 'waiting_ready', 'waiting_ready',
      'speaker_downloading', 'speaker_downloading', 'speaker_downloading',
      'starting_recording', 'starting_recording', 'starting_recording', 'starting_recording',
    ]);
    expect(t.rows.map((r) => r.offset_ms)).toEqual([0, 10, 10, 10, 20, 20, 21, 21, 21, 30, 30, 30, 30]);
    expect(t.duration_ms).toBe(30);
  });

  it('timeline - a broadcast without a recorded step keeps its place in time', () => {
    const t = timeline({
      session: session(),
      steps: [step(0, 'create_session', ADMIN, 'idle', 'idle'), step(50, 'cancel', ADMIN, 'idle', 'cancelled', { reason: null })],
      events: [event(20, EventName['measurement.analysis_results'], [ADMIN], { results: {} }), event(50, EventName['measurement.session_cancelled'], [ADMIN])],
    });
    expect(t.rows.map((r) => r.kind)).toEqual(['step', 'broadcast', 'step', 'broadcast']);
  });
});

describe('timeline model - marks', () => {
  it('timeline - a deadline tick is marked with the devices it waited for, and the error broadcast with where it came from', () => {
    const t = timeline({
      session: session(),
      steps: [
        step(0, 'create_session', ADMIN, 'idle', 'idle'),
        step(200, 'tick', null, 'waiting_ready', 'failed', { fired: SessionFailure.timeout, missing_device_ids: [MIC2] }),
        step(300, 'error', MIC1, 'failed', 'failed', { error_code: null, error_message: 'no mic' }),
        step(400, 'tick', null, 'speaker_complete', 'waiting_ready', { fired: 'next_speaker', current_speaker_index: 1 }),
        step(500, 'tick', null, 'playing', 'failed', { fired: SessionFailure.device_disconnected, missing_device_ids: [SPK] }),
        step(600, 'participant_left', MIC2, 'waiting_ready', 'failed'),
      ],
      events: [
        event(200, EventName['measurement.error'], [SPK, MIC1, MIC2], { error_device_id: null, error_code: 'timeout', error_message: 'x', missing_device_ids: [MIC2] }),
        event(300, EventName['measurement.error'], [SPK, MIC1, MIC2], { error_device_id: MIC1, error_code: 'device_error', error_message: 'no mic' }),
      ],
    });
    expect(t.rows.map((r) => r.mark)).toEqual([
      null,
      { kind: 'deadline', code: 'timeout', device_ids: [MIC2], message: null },
      { kind: 'error', code: 'timeout', device_ids: [MIC2], message: 'x' },
      { kind: 'error', code: 'device_error', device_ids: [MIC1], message: 'no mic' },
      { kind: 'error', code: 'device_error', device_ids: [MIC1], message: 'no mic' },
      null,
      { kind: 'disconnect', code: 'device_disconnected', device_ids: [SPK], message: null },
      { kind: 'departure', code: 'participant_left', device_ids: [MIC2], message: null },
    ]);
  });
});

describe('timeline rendering', () => {
  const sample = () =>
    timeline({
      session: session({ speakers: [{ device_id: SPK, slot_id: 's<1>', slot_label: 'Speaker "A" & <b>' }] }),
      steps: [
        step(0, 'create_session', ADMIN, 'idle', 'idle'),
        step(10, 'start_speaker', ADMIN, 'idle', 'waiting_ready'),
        step(200, 'tick', null, 'waiting_ready', 'failed', { fired: SessionFailure.timeout, missing_device_ids: [MIC2] }),
      ],
      events: [phaseUpdate(10, 'waiting_ready'), event(200, EventName['measurement.error'], [SPK, MIC1, MIC2, ADMIN], { error_code: 'timeout', error_message: '<script>alert(1)</script>', missing_device_ids: [MIC2] })],
    });

  it('text - lanes for every device, one line per row, no escape codes unless colour is asked for', () => {
    const t = sample();
    const plain = renderText(t);
    expect(plain).not.toContain('\x1b[');
    const lines = plain.split('\n');
    const header = lines.find((l) => l.includes('service'))!;
    for (const c of t.columns) expect(header).toContain(c.name.slice(0, 17));
    const rows = lines.filter((l) => /^\s+\+\d+ /.test(l));
    expect(rows).toHaveLength(t.rows.length);
    // The step arrow points into the service lane from the admin's lane; the tick is the service's own.
    expect(rows[1]).toMatch(/◀─+.*●/);
    expect(rows[3]).toContain('◆');
    expect(rows[3]).toContain('✖');
    expect(rows[3]).toContain('deadline fired (timeout), waiting for Kitchen');
    // The broadcast reaches 4 lanes.
    expect(rows[4]!.match(/▶|✖/g)).toHaveLength(4);
    expect(renderText(t, { color: true })).toContain('\x1b[31m');
    for (const l of lines) expect(l).toBe(l.trimEnd());
  });

  it('svg - every text is escaped; labels, lanes and red marks are there', () => {
    const svg = renderSvg(sample());
    expect(svg).toContain('Speaker &quot;A&quot; &amp; &lt;b&gt;');
    expect(svg).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(svg).not.toMatch(/<script|<b>/);
    expect(svg.match(/class="life"/g)).toHaveLength(5);
    expect(svg).toContain('#c62828');
    // Well-formed: every element opened is closed.
    const opened = (svg.match(/<(g|text|svg|title|style|tspan)[\s>]/g) ?? []).length;
    const closed = (svg.match(/<\/(g|text|svg|title|style|tspan)>/g) ?? []).length;
    expect(opened).toBe(closed);
    expect(esc(`<>&"'`)).toBe('&lt;&gt;&amp;&quot;&#39;');
  });
});
