/**
 * The app-like phone model's reactions to scripted broadcasts, over an in-memory transport that
 * records what the phone sends and answers with canned replies (a unit test of the model only;
 * the integration test runs it against the real service).
 */
import { describe, expect, it } from 'vitest';
import { EventName, Subject } from '../../subjects/index.js';
import { Phone, type PhoneOptions } from '../../src/sim/phone.js';
import type { PhoneTransport, PushHandler, RequestResult } from '../../src/sim/transport.js';
import { waitFor } from '../helpers/infra.js';

type Sent = { deviceId: string; subject: Subject; data: Record<string, unknown> };
type Responder = (subject: Subject, data: Record<string, unknown>) => RequestResult | Promise<RequestResult>;

const LOBBY = { lobby_id: 'L1', code: 'K7QM2X', admin_device_id: 'x', participants: [] };

/** Answers every step `accepted`, every lobby read with LOBBY, create_session with a session. */
const defaultResponder: Responder = (subject) => {
  if (subject.startsWith('lobby.') && subject !== Subject['lobby.step_update']) return { ok: true, data: LOBBY };
  if (subject === Subject['measurement.create_session']) return { ok: true, data: { session_id: 'S1', audio_duration_seconds: 15 } };
  return { ok: true, data: { ok: true, status: 'accepted' } };
};

class FakeTransport implements PhoneTransport {
  readonly sent: Sent[] = [];
  private readonly handlers = new Map<string, PushHandler>();
  constructor(private readonly respond: Responder = defaultResponder) {}

  async request(deviceId: string, subject: Subject, data: Record<string, unknown>): Promise<RequestResult> {
    this.sent.push({ deviceId, subject, data });
    return this.respond(subject, data);
  }
  attach(deviceId: string, handler: PushHandler): () => void {
    this.handlers.set(deviceId, handler);
    return () => this.handlers.delete(deviceId);
  }
  push(deviceId: string, event: EventName, data: Record<string, unknown>): void {
    this.handlers.get(deviceId)?.(event, data);
  }
  of(subject: Subject): Sent[] {
    return this.sent.filter((s) => s.subject === subject);
  }
}

function phone(opts: PhoneOptions = {}, respond?: Responder) {
  const t = new FakeTransport(respond);
  return { t, p: new Phone(t, opts) };
}

const startMeasurement = (speaker: string) => ({
  session_id: 'S1',
  job_id: 'J1',
  speaker_device_id: speaker,
  speaker_slot_id: 'speaker-1',
  current_speaker_slot_id: 'speaker-1',
  current_speaker_index: 0,
  total_speakers: 1,
  total_microphones: 2,
  attempt: 1,
});

describe('sim phone - app-like reactions', () => {
  it('sim phone - a device id is a UUID v4', () => {
    expect(phone().p.deviceId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('sim phone - a microphone answers each command with the app\'s exact data', async () => {
    const { t, p } = phone();
    const me = p.deviceId;
    t.push(me, EventName['measurement.start_measurement'], startMeasurement('spk'));
    await waitFor(() => t.of(Subject['measurement.ready']).length === 1);
    expect(t.of(Subject['measurement.ready'])[0]!.data).toEqual({ session_id: 'S1', device_id: me });
    t.push(me, EventName['measurement.start_recording'], { session_id: 'S1', speaker_slot_id: 'speaker-1', expected_duration_seconds: 15 });
    await waitFor(() => t.of(Subject['measurement.recording_started']).length === 1);
    expect(t.of(Subject['measurement.recording_started'])[0]!.data).toEqual({ session_id: 'S1', device_id: me });
    const stop = { session_id: 'S1', job_id: 'J1', speaker_slot_id: 'speaker-1', upload_endpoint: 'http://x/v1/jobs/J1/uploads/' };
    t.push(me, EventName['measurement.stop_recording'], stop);
    await waitFor(() => t.of(Subject['measurement.recording_uploaded']).length === 1);
    expect(t.of(Subject['measurement.recording_uploaded'])[0]!.data).toEqual({
      session_id: 'S1',
      upload_name: `recording_${me}_speaker-1.wav`,
    });
    // The app ignores speaker_complete; session_complete ends the session.
    t.push(me, EventName['measurement.speaker_complete'], { session_id: 'S1', completed_speaker_slot_id: 'speaker-1', remaining_speakers: 0, recordings: [] });
    const before = t.sent.length;
    t.push(me, EventName['measurement.session_complete'], { session_id: 'S1', job_id: 'J1', completed_speakers: ['speaker-1'], recordings: [], audio_hash: null });
    expect(p.status).toBe('completed');
    expect(t.sent.length).toBe(before);
    expect(p.violations).toEqual([]);
  });

  it('sim phone - the speaker fetches, then plays for playbackMs before playback_complete', async () => {
    const { t, p } = phone({ playbackMs: 80 });
    const me = p.deviceId;
    t.push(me, EventName['measurement.start_measurement'], startMeasurement(me));
    t.push(me, EventName['measurement.request_audio'], { session_id: 'S1', audio_url: 'http://x/audio' });
    await waitFor(() => t.of(Subject['measurement.speaker_audio_ready']).length === 1);
    const ready = t.of(Subject['measurement.speaker_audio_ready'])[0]!.data;
    expect(ready).toMatchObject({ session_id: 'S1', device_id: me });
    expect(ready.audio_hash).toMatch(/^[0-9a-f]{64}$/);
    const t0 = performance.now();
    t.push(me, EventName['measurement.start_playback'], { session_id: 'S1' });
    await waitFor(() => t.of(Subject['measurement.playback_complete']).length === 1);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(75);
    expect(t.of(Subject['measurement.playback_complete'])[0]!.data).toEqual({ session_id: 'S1' });
  });

  it('sim phone - a command missing a field the app casts is dropped and recorded', async () => {
    const { t, p } = phone();
    const { current_speaker_slot_id: _, ...v1Only } = startMeasurement('spk');
    t.push(p.deviceId, EventName['measurement.start_measurement'], v1Only);
    expect(p.violations).toEqual([
      expect.objectContaining({ source: 'push measurement.start_measurement', field: 'current_speaker_slot_id' }),
    ]);
    expect(p.status).toBe('failed');
    expect(t.of(Subject['measurement.ready'])).toEqual([]);
  });

  it('sim phone - an unknown phase is a warning, a non-integer count a violation', () => {
    const { t, p } = phone();
    t.push(p.deviceId, EventName['measurement.start_measurement'], startMeasurement('spk'));
    const update = { session_id: 'S1', job_id: 'J1', phase_description: '', current_speaker_index: 0, total_speakers: 1, completed_speakers: 0 };
    t.push(p.deviceId, EventName['measurement.phase_update'], { ...update, phase: 'speaker_complete' });
    expect(p.warnings).toEqual(['unknown phase "speaker_complete" (the app shows idle)']);
    expect(p.violations).toEqual([]);
    t.push(p.deviceId, EventName['measurement.phase_update'], { ...update, phase: 'playing', completed_speakers: [] });
    expect(p.violations.map((v) => v.field)).toEqual(['completed_speakers']);
    // A phase_update is not needed to go on: the phone keeps going.
    expect(p.status).toBe('in_session');
  });

  it('sim phone - every lobby.updated leads to lobby.get {code} as typed; the admin re-shares step and profile on joins', async () => {
    const { t, p: joiner } = phone({ lowercaseCode: true });
    await joiner.join(' K7QM2X ');
    expect(t.of(Subject['lobby.join'])[0]!.data).toEqual({ code: 'k7qm2x' });
    t.push(joiner.deviceId, EventName['lobby.updated'], { type: 'role_assigned', lobby_id: 'L1', lobby: LOBBY });
    await waitFor(() => t.of(Subject['lobby.get']).length === 1);
    expect(t.of(Subject['lobby.get'])[0]!.data).toEqual({ code: 'k7qm2x' });
    expect(t.of(Subject['lobby.step_update'])).toEqual([]);

    const { t: ta, p: admin } = phone();
    await admin.createLobby();
    await admin.setStep(2);
    ta.push(admin.deviceId, EventName['lobby.updated'], { type: 'participant_joined', lobby_id: 'L1', device_id: 'd2', lobby: LOBBY });
    await waitFor(() => ta.of(Subject['lobby.profile_update']).length === 1 && ta.of(Subject['lobby.get']).length === 1);
    expect(ta.of(Subject['lobby.step_update']).map((s) => s.data)).toEqual([
      { lobby_id: 'L1', step_index: 2 },
      { lobby_id: 'L1', step_index: 2 },
    ]);
    expect(ta.of(Subject['lobby.profile_update'])[0]!.data).toEqual({ lobby_id: 'L1', profile_id: 'smartphone' });
    expect(ta.of(Subject['lobby.get'])[0]!.data).toEqual({ code: 'K7QM2X' });
    // LOBBY does not list d2: the lobby.get did not show the change the broadcast announced.
    await waitFor(() => admin.violations.length === 1);
    expect(admin.violations[0]!.problem).toContain('does not list d2');
  });

  it('sim phone - role none goes out with both slot fields null', async () => {
    const { t, p } = phone();
    await p.createLobby();
    await p.assignRole('d2', 'none', 'speaker-1', 'Loudspeaker 1');
    expect(t.of(Subject['role.assign'])[0]!.data).toEqual({
      lobby_id: 'L1',
      target_device_id: 'd2',
      role: 'none',
      role_slot_id: null,
      role_slot_label: null,
    });
  });

  it('sim phone - start_speaker goes out on the 500 ms timer only when the create_session reply is in', async () => {
    const slots = { job_id: 'J1', speakers: [{ device_id: 'a', slot_id: 'speaker-1', slot_label: 'Loudspeaker 1' }], microphones: [] };
    const { t, p } = phone({ startSpeakerDelayMs: 60 });
    await p.createLobby();
    expect(await p.createSession(slots)).toBe('S1');
    await waitFor(() => t.of(Subject['measurement.start_speaker']).length === 1);
    expect(t.of(Subject['measurement.start_speaker'])[0]!.data).toEqual({ session_id: 'S1' });
    expect(t.of(Subject['measurement.create_session'])[0]!.data).toEqual({ ...slots, lobby_id: 'L1' });

    const slow: Responder = async (subject, data) => {
      if (subject === Subject['measurement.create_session']) await new Promise((r) => setTimeout(r, 120));
      return defaultResponder(subject, data);
    };
    const { t: t2, p: late } = phone({ startSpeakerDelayMs: 60 }, slow);
    await late.createLobby();
    expect(await late.createSession(slots)).toBe('S1');
    expect(late.startSpeakerSkipped).toBe(true);
    expect(late.status).toBe('failed');
    expect(t2.of(Subject['measurement.start_speaker'])).toEqual([]);
  });

  it('sim phone - a dropped-out phone stops answering after its steps', async () => {
    const { t, p } = phone({ dropAfterSteps: 1 });
    t.push(p.deviceId, EventName['measurement.start_measurement'], startMeasurement('spk'));
    await waitFor(() => t.of(Subject['measurement.ready']).length === 1);
    t.push(p.deviceId, EventName['measurement.start_recording'], { session_id: 'S1', speaker_slot_id: 'speaker-1' });
    await waitFor(() => p.dropped);
    t.push(p.deviceId, EventName['lobby.updated'], { type: 'role_assigned', lobby_id: 'L1', lobby: LOBBY });
    expect(t.sent.map((s) => s.subject)).toEqual([Subject['measurement.ready']]);
  });

  it('sim phone - with duplicateRate 1 every step goes out twice; a refused step fails the phone', async () => {
    const refuse: Responder = (subject, data) =>
      subject === Subject['measurement.recording_started']
        ? { ok: false, status: 409, error: { code: 'wrong_phase', message: 'no' } }
        : defaultResponder(subject, data);
    const { t, p } = phone({ duplicateRate: 1 }, refuse);
    t.push(p.deviceId, EventName['measurement.start_measurement'], startMeasurement('spk'));
    await waitFor(() => t.of(Subject['measurement.ready']).length === 2);
    expect(p.duplicatesSent).toBe(1);
    t.push(p.deviceId, EventName['measurement.start_recording'], { session_id: 'S1', speaker_slot_id: 'speaker-1' });
    await waitFor(() => p.status === 'failed');
    expect(p.failure).toBe('measurement.recording_started refused: wrong_phase');
    expect(p.errors.map((e) => e.duplicate)).toEqual([false, true]);
  });

  it('sim phone - pushes of another session and session-less (all) broadcasts are ignored', () => {
    const { t, p } = phone();
    t.push(p.deviceId, EventName['measurement.error'], { session_id: 'S0', error_message: 'x', error_code: 'timeout', phase: 'playing', error_device_id: null });
    expect(p.status).toBe('idle');
    t.push(p.deviceId, EventName['measurement.start_measurement'], startMeasurement('spk'));
    t.push(p.deviceId, EventName['measurement.session_cancelled'], { session_id: 'S9', reason: 'x' });
    expect(p.status).toBe('in_session');
    t.push(p.deviceId, EventName['measurement.session_cancelled'], { session_id: 'S1', reason: 'admin' });
    expect(p.status).toBe('failed');
    expect(p.failure).toBe('session cancelled: admin');
  });
});
