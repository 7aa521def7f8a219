/**
 * The rules of CONTRACT section 3 that keep a session safe, over real NATS and PostgreSQL:
 * creation checks, duplicates, out-of-order and foreign steps, errors and retries, cancel,
 * lobby close, unknown ids, status access and idempotency keys. "Changes nothing" is checked
 * against the event log and the session status, both written in the step's own transaction.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Subject } from '../../subjects/index.js';
import {
  TRIGGERS,
  createSession,
  cycleSteps,
  expectError,
  lastEventId,
  loggedEvents,
  micIds,
  runCycle,
  sessionDevices,
  setupLobby,
  snapshot,
  step,
} from '../helpers/measurement.js';
import { device, startHarness } from '../helpers/service.js';

let h: Awaited<ReturnType<typeof startHarness>>;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

describe('session rules', () => {
  it('session - creation checks refuse bad requests and change nothing', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 2, microphones: 2, extras: 2 });
    await c.call('lobby.leave', L.extras[1]!, { lobby_id: L.lobbyId });
    const [s1, s2] = L.speakers;
    const [m1] = L.microphones;
    const base = { job_id: 'j', lobby_id: L.lobbyId, speakers: L.speakers, microphones: L.microphones };
    const many = (n: number) => Array.from({ length: n }, (_, i) => ({ device_id: `d${i}`, slot_id: `X${i}` }));
    const before = await lastEventId(c, L);
    const cases: Array<[string, string, Record<string, unknown>, string]> = [
      ['non-admin', s1!.device_id, base, 'forbidden'],
      ['device not joined', L.admin, { ...base, microphones: [{ device_id: device('ghost'), slot_id: 'G' }] }, 'participant_not_found'],
      ['device left', L.admin, { ...base, microphones: [{ device_id: L.extras[1], slot_id: 'G' }] }, 'participant_not_found'],
      ['role differs', L.admin, { ...base, speakers: [m1], microphones: [{ ...s1!, slot_id: 'M9' }] }, 'role_mismatch'],
      ['role none', L.admin, { ...base, microphones: [{ device_id: L.extras[0], slot_id: 'M9' }] }, 'role_mismatch'],
      ['device twice', L.admin, { ...base, speakers: [s1, { ...s1!, slot_id: 'S9' }] }, 'invalid_request'],
      ['device in both lists', L.admin, { ...base, microphones: [m1, { ...s1!, slot_id: 'M9' }] }, 'invalid_request'],
      ['0 speakers', L.admin, { ...base, speakers: [] }, 'invalid_request'],
      ['17 speakers', L.admin, { ...base, speakers: many(17) }, 'invalid_request'],
      ['65 microphones', L.admin, { ...base, microphones: many(65) }, 'invalid_request'],
      ['unknown lobby', L.admin, { ...base, lobby_id: crypto.randomUUID() }, 'lobby_not_found'],
    ];
    for (const [what, who, data, code] of cases) {
      const r = await c.send('measurement.create_session', who, data);
      expect(r.error?.code, what).toBe(code);
    }
    const mismatch = await c.send('measurement.create_session', L.admin, { ...base, speakers: [m1], microphones: [s2] });
    expect(expectError(mismatch, 'role_mismatch').details).toMatchObject({
      device_id: m1!.device_id,
      role: 'microphone',
      expected: 'speaker',
    });
    expect(await lastEventId(c, L)).toBe(before);
    expect(await c.call('lobby.get', L.admin, { lobby_id: L.lobbyId })).toMatchObject({ state: 'open', active_session_id: null });

    const S = await createSession(c, L);
    const second = expectError(await c.send('measurement.create_session', L.admin, base), 'session_active');
    expect(second.details).toMatchObject({ session_id: S });
    await c.call('measurement.cancel_session', L.admin, { session_id: S });
    await c.call('lobby.close', L.admin, { lobby_id: L.lobbyId });
    const closed = expectError(await c.send('measurement.create_session', L.admin, base), 'lobby_not_open');
    expect(closed.details).toEqual({ state: 'closed' });
  });

  it('session - duplicated steps reply duplicate and change nothing', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 2, microphones: 2 });
    const S = await createSession(c, L);
    await runCycle(c, L, S, 0, {
      sequential: true,
      onStep: async (r) => {
        const before = await snapshot(c, L, S);
        const again = await step(c, r);
        expect(again.reply, `${r.subject} from ${r.device} again`).toEqual({ ...r.reply, status: 'duplicate' });
        expect(await snapshot(c, L, S)).toEqual(before);
      },
    });
    // The session still runs to the end (no step was counted twice).
    await runCycle(c, L, S, 1);
    const st = await c.call('measurement.session_status', L.admin, { session_id: S });
    expect(st).toMatchObject({ state: 'completed', completed_speakers: 2 });
    expect(st.recordings).toHaveLength(4);
  });

  it('session - the same step sent several times at once is applied once', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 2, microphones: 2 });
    const S = await createSession(c, L);
    // Copies of the session's very last upload may arrive after it completed: duplicates too.
    for (const i of [0, 1]) {
      const replies = await runCycle(c, L, S, i, { copies: 3 });
      const statuses = new Map<string, string[]>();
      for (const r of replies) {
        const id = `${r.subject}:${r.device}`;
        statuses.set(id, [...(statuses.get(id) ?? []), r.reply.status]);
      }
      expect(statuses.size).toBe(10);
      for (const [what, s] of statuses) expect(s.sort(), `cycle ${i}: ${what}`).toEqual(['accepted', 'duplicate', 'duplicate']);
    }
    const types = (await loggedEvents(c, L)).map((e) => e.type);
    for (const t of TRIGGERS) expect(types.filter((x) => x === t), t).toHaveLength(2);
    expect(types.filter((x) => x === 'measurement.session_complete')).toHaveLength(1);
  });

  it('session - out-of-order steps are refused with wrong_phase and change nothing', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 2 });
    const S = await createSession(c, L);
    const [spk] = L.speakers.map((s) => s.device_id);
    const [m1, m2] = micIds(L);
    const refuse = async (subject: Subject, who: string, phase: string, expected: Subject[], extra = {}) => {
      const before = await snapshot(c, L, S);
      const e = expectError(await c.send(subject, who, { session_id: S, ...extra }), 'wrong_phase');
      expect(e.details, `${subject} in ${phase}`).toEqual({ phase, expected });
      expect(await snapshot(c, L, S)).toEqual(before);
    };
    const admin: Subject[] = ['measurement.start_speaker', 'measurement.cancel_session'];
    await refuse('measurement.ready', m1!, 'idle', admin);
    await refuse('measurement.error', spk!, 'idle', admin, { error_message: 'x' });
    const groups = cycleSteps(L, S, 0);
    await step(c, groups[0]![0]!);
    await refuse('measurement.speaker_audio_ready', spk!, 'waiting_ready', ['measurement.ready']);
    await refuse('measurement.recording_started', m1!, 'waiting_ready', ['measurement.ready']);
    await refuse('measurement.playback_complete', spk!, 'waiting_ready', ['measurement.ready']);
    await refuse('measurement.recording_uploaded', m2!, 'waiting_ready', ['measurement.ready'], { upload_name: 'x.wav' });
    for (const s of groups[1]!) await step(c, s);
    await refuse('measurement.recording_started', m1!, 'speaker_downloading', ['measurement.speaker_audio_ready']);
    await step(c, groups[2]![0]!);
    await refuse('measurement.playback_complete', spk!, 'starting_recording', ['measurement.recording_started']);
    await refuse('measurement.recording_uploaded', m1!, 'starting_recording', ['measurement.recording_started'], { upload_name: 'x' });
    for (const s of groups[3]!) await step(c, s);
    await refuse('measurement.recording_uploaded', m1!, 'playing', ['measurement.playback_complete'], { upload_name: 'x' });
    await c.call('measurement.error', m2!, { session_id: S, error_message: 'boom' });
    await refuse('measurement.playback_complete', spk!, 'failed', admin);
  });

  it('session - steps from devices outside the session or of the wrong kind are forbidden', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 2, microphones: 1, extras: 1 });
    const S = await createSession(c, L);
    const [s1, s2] = L.speakers.map((s) => s.device_id);
    const [m1] = micIds(L);
    await c.call('measurement.start_speaker', L.admin, { session_id: S });
    const before = await snapshot(c, L, S);
    const cases: Array<[Subject, string]> = [
      ['measurement.ready', L.extras[0]!], // joined, not listed
      ['measurement.ready', L.admin], // the admin is not a session device here
      ['measurement.ready', device('stranger')], // not even a member
      ['measurement.speaker_audio_ready', m1!], // a microphone does not send speaker steps
      ['measurement.playback_complete', m1!],
      ['measurement.recording_started', s1!], // a speaker does not send microphone steps
      ['measurement.start_speaker', s1!], // admin steps from anyone else
      ['measurement.cancel_session', m1!],
    ];
    for (const [subject, who] of cases) expectError(await c.send(subject, who, { session_id: S }), 'forbidden');
    expectError(await c.send('measurement.error', L.extras[0]!, { session_id: S, error_message: 'x' }), 'forbidden');
    // Another speaker's steps are not needed in this cycle.
    expect(await c.call('measurement.ready', s2!, { session_id: S })).toMatchObject({ status: 'not_required', phase: 'waiting_ready' });
    expect(await snapshot(c, L, S)).toEqual(before);
  });

  it('session - a device error fails the cycle; the admin retries the same speaker and the session completes', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 2 });
    const S = await createSession(c, L);
    const [m1, m2] = micIds(L);
    const groups = cycleSteps(L, S, 0);
    for (const g of groups.slice(0, 3)) for (const s of g) await step(c, s);
    const before = await lastEventId(c, L);
    const r = await c.call('measurement.error', m2!, { session_id: S, error_message: 'mic busy', error_code: 'mic_busy' });
    expect(r).toMatchObject({ status: 'accepted', state: 'running', phase: 'failed' });
    const events = await loggedEvents(c, L, before);
    expect(events.map((e) => e.type)).toEqual(['measurement.error', 'measurement.phase_update']);
    expect(events[0]!.payload).toEqual({
      session_id: S,
      error_device_id: m2,
      error_message: 'mic busy',
      error_code: 'mic_busy',
      phase: 'starting_recording',
    });
    expect(events[1]!.payload).toMatchObject({ phase: 'failed' });
    const core = await c.waitFor(L.lobbyId, 'measurement.error');
    // "(all)": every joined device of the lobby, the admin (no session device here) included.
    expect(core[0]!.targets.device_ids).toEqual(L.joined);
    // A second report of the same failure is a duplicate.
    expect(await c.call('measurement.error', m1!, { session_id: S, error_message: 'me too' })).toMatchObject({ status: 'duplicate' });

    const retry = await c.call('measurement.start_speaker', L.admin, { session_id: S });
    expect(retry).toMatchObject({ status: 'accepted', phase: 'waiting_ready' });
    const st = await c.call('measurement.session_status', L.admin, { session_id: S });
    expect(st).toMatchObject({ attempt: 2, current_speaker_index: 0 });
    expect(st.current).toMatchObject({ ready: [], recording_started: [], uploaded: {} });
    const start = await c.waitFor(L.lobbyId, 'measurement.start_measurement', 2);
    expect(start[1]!.data).toMatchObject({ attempt: 2, speaker_slot_id: 'S1', current_speaker_index: 0 });
    await runCycle(c, L, S, 0, { from: 1 });
    expect(await c.call('measurement.session_status', L.admin, { session_id: S })).toMatchObject({ state: 'completed' });
    // Without a code, a device error is reported as device_error.
    const L2 = await setupLobby(c, { speakers: 1, microphones: 1 });
    const S2 = await createSession(c, L2);
    await c.call('measurement.start_speaker', L2.admin, { session_id: S2 });
    await c.call('measurement.error', L2.speakers[0]!.device_id, { session_id: S2, error_message: 'no audio' });
    const logged = await loggedEvents(c, L2);
    expect(logged.find((e) => e.type === 'measurement.error')?.payload).toMatchObject({ error_code: 'device_error' });
  });

  it('session - cancel_session cancels, frees the lobby, and cancelling again is ok', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 1 });
    const S = await createSession(c, L);
    await c.call('measurement.start_speaker', L.admin, { session_id: S });
    const before = await lastEventId(c, L);
    const r = await c.call('measurement.cancel_session', L.admin, { session_id: S, reason: 'room too loud' });
    expect(r).toMatchObject({ ok: true, status: 'accepted', state: 'cancelled', phase: 'cancelled' });
    const events = await loggedEvents(c, L, before);
    expect(events.map((e) => e.type)).toEqual(['measurement.session_cancelled', 'measurement.phase_update', 'lobby.updated']);
    expect(events[0]!.payload).toEqual({ session_id: S, reason: 'room too loud' });
    expect(events[2]!.payload).toMatchObject({ type: 'state_changed', state: 'open', active_session_id: null });
    expect(await c.call('lobby.get', L.admin, { lobby_id: L.lobbyId })).toMatchObject({ state: 'open', active_session_id: null });
    const again = await c.call('measurement.cancel_session', L.admin, { session_id: S });
    expect(again).toMatchObject({ ok: true, state: 'cancelled' });
    expect(await lastEventId(c, L)).toBe(events.at(-1)!.id);
    for (const subject of ['measurement.ready', 'measurement.start_speaker'] as const) {
      const who = subject === 'measurement.ready' ? L.speakers[0]!.device_id : L.admin;
      expect(expectError(await c.send(subject, who, { session_id: S }), 'session_finished').details).toEqual({ state: 'cancelled' });
    }
    // The lobby is free for a new session.
    expect(await createSession(c, L)).not.toBe(S);
  });

  it('session - steps after completion reply session_finished', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 2, microphones: 1 });
    const S = await createSession(c, L);
    await runCycle(c, L, S, 0);
    await runCycle(c, L, S, 1);
    const [spk1, , mic] = sessionDevices(L);
    const before = await snapshot(c, L, S);
    // Steps no device took in the last cycle (a retry of one that was taken is a duplicate, below).
    const cases: Array<[Subject, string, Record<string, unknown>]> = [
      ['measurement.start_speaker', L.admin, {}],
      ['measurement.cancel_session', L.admin, {}],
      ['measurement.ready', spk1!, {}], // the first speaker's cycle is not the last one
      ['measurement.playback_complete', spk1!, {}],
      ['measurement.speaker_audio_ready', mic!, {}],
      ['measurement.error', mic!, { error_message: 'late' }],
    ];
    for (const [subject, who, data] of cases) {
      const e = expectError(await c.send(subject, who, { session_id: S, ...data }), 'session_finished');
      expect(e.details, subject).toEqual({ state: 'completed' });
    }
    expect(await snapshot(c, L, S)).toEqual(before);
  });

  it('session - a retried final upload after completion replies duplicate', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 2 });
    const S = await createSession(c, L);
    const spk = L.speakers[0]!.device_id;
    const groups = cycleSteps(L, S, 0);
    for (const g of groups.slice(0, 5)) for (const s of g) await step(c, s);
    const [first, last] = groups[5]!;
    await step(c, first!);
    // The final upload completes the session; say its reply is lost and the microphone retries
    // it without an Idempotency-Key.
    const done = await step(c, last!);
    expect(done.reply).toMatchObject({ status: 'accepted', state: 'completed', phase: 'completed' });
    const before = await snapshot(c, L, S);
    expect(await c.call(last!.subject, last!.device, last!.data)).toEqual({ ...done.reply, status: 'duplicate' });
    // So is any step a device took in that last cycle, by that device.
    expect(await c.call(first!.subject, first!.device, first!.data)).toMatchObject({ status: 'duplicate', state: 'completed' });
    expect(await c.call('measurement.playback_complete', spk, { session_id: S })).toMatchObject({ status: 'duplicate' });
    expect(await c.call('measurement.recording_started', last!.device, { session_id: S })).toMatchObject({ status: 'duplicate' });
    // Nothing changed, nothing was broadcast: the session completed once.
    expect(await snapshot(c, L, S)).toEqual(before);
    const logged = await loggedEvents(c, L);
    expect(logged.filter((e) => e.type === 'measurement.session_complete')).toHaveLength(1);
    // A report of an error is not a retry: still session_finished.
    const late = await c.send('measurement.error', last!.device, { session_id: S, error_message: 'late' });
    expect(expectError(late, 'session_finished').details).toEqual({ state: 'completed' });
    expect(await snapshot(c, L, S)).toEqual(before);
  });

  it('session - the admin who is not a session device receives speaker_complete and measurement.error', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 2, microphones: 2, extras: 1 });
    const S = await createSession(c, L);
    const devices = sessionDevices(L);
    expect(devices).not.toContain(L.admin);
    await runCycle(c, L, S, 0);
    // The admin learns that the speaker completed, so it can start the next one.
    const [completed] = await c.waitFor(L.lobbyId, 'measurement.speaker_complete');
    expect(completed!.targets.device_ids).toEqual(L.joined);
    expect(completed!.data).toMatchObject({ session_id: S, completed_speaker_slot_id: 'S1', remaining_speakers: 1 });
    await c.call('measurement.start_speaker', L.admin, { session_id: S });
    const spk2 = L.speakers[1]!.device_id;
    await c.call('measurement.error', spk2, { session_id: S, error_message: 'no audio output', error_code: 'audio_output' });
    // ... and that the cycle failed, so it can retry or cancel.
    const [failed] = await c.waitFor(L.lobbyId, 'measurement.error');
    expect(failed!.targets.device_ids).toEqual(L.joined);
    expect(failed!.data).toMatchObject({ error_device_id: spk2, error_code: 'audio_output', phase: 'waiting_ready' });
    await c.call('measurement.cancel_session', L.admin, { session_id: S });
    const [cancelled] = await c.waitFor(L.lobbyId, 'measurement.session_cancelled');
    expect(cancelled!.targets.device_ids).toEqual(L.joined);
    // "(all session devices)" broadcasts and the triggers still reach session devices only:
    // 6 phase updates in cycle 1, then waiting_ready, failed, cancelled.
    const updates = await c.waitFor(L.lobbyId, 'measurement.phase_update', 9);
    for (const e of [...updates, ...c.of(L.lobbyId, 'measurement.start_measurement')]) {
      expect(e.targets.device_ids, e.event).toEqual(devices);
    }
    const toAdmin = c.of(L.lobbyId).filter((e) => e.event.startsWith('measurement.') && e.targets.device_ids.includes(L.admin));
    expect(toAdmin.map((e) => e.event)).toEqual([
      'measurement.speaker_complete',
      'measurement.error',
      'measurement.session_cancelled',
    ]);
  });

  it('session - kicking or re-roling a device of a running session is refused with session_active', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 1, extras: 1 });
    const S = await createSession(c, L);
    const [spk, mic] = sessionDevices(L);
    const ref = { lobby_id: L.lobbyId };
    for (const target of [spk!, mic!]) {
      const kick = expectError(await c.send('lobby.kick', L.admin, { ...ref, target_device_id: target }), 'session_active');
      expect(kick.details).toMatchObject({ session_id: S, device_id: target });
      expectError(await c.send('role.assign', L.admin, { ...ref, target_device_id: target, role: 'none' }), 'session_active');
    }
    // Devices the session does not list are not protected.
    await c.call('role.assign', L.admin, { ...ref, target_device_id: L.extras[0]!, role: 'microphone', role_slot_id: 'M7' });
    await c.call('lobby.kick', L.admin, { ...ref, target_device_id: L.extras[0]! });
    // A kicked device may no longer read the session.
    expectError(await c.send('measurement.session_status', L.extras[0]!, { session_id: S }), 'forbidden');
    await runCycle(c, L, S, 0);
    await c.call('role.assign', L.admin, { ...ref, target_device_id: mic!, role: 'speaker', role_slot_id: 'S2' });
    await c.call('lobby.kick', L.admin, { ...ref, target_device_id: spk! });
  });

  it('session - lobby.close during a session cancels it first', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 1 });
    const S = await createSession(c, L);
    await c.call('measurement.start_speaker', L.admin, { session_id: S });
    const before = await lastEventId(c, L);
    await c.call('lobby.close', L.admin, { lobby_id: L.lobbyId });
    const events = await loggedEvents(c, L, before);
    expect(events.map((e) => [e.type, e.payload.type ?? e.payload.phase])).toEqual([
      ['measurement.session_cancelled', undefined],
      ['measurement.phase_update', 'cancelled'],
      ['lobby.updated', 'lobby_closed'],
    ]);
    expect(events[2]!.payload.lobby).toMatchObject({ state: 'closed', active_session_id: null });
    const st = await c.call('measurement.session_status', L.admin, { session_id: S });
    expect(st).toMatchObject({ state: 'cancelled', deadline_at: null });
    expectError(await c.send('measurement.ready', L.speakers[0]!.device_id, { session_id: S }), 'session_finished');
  });

  it('session - unknown or malformed session ids are session_not_found; status is for members only', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 1, extras: 1 });
    const S = await createSession(c, L);
    const spk = L.speakers[0]!.device_id;
    for (const id of ['not-a-uuid', crypto.randomUUID(), S.toUpperCase().replace(/[0-9A-F]$/, 'G')]) {
      const cases: Array<[Subject, string, Record<string, unknown>]> = [
        ['measurement.session_status', spk, {}],
        ['measurement.start_speaker', L.admin, {}],
        ['measurement.ready', spk, {}],
        ['measurement.cancel_session', L.admin, {}],
        ['measurement.error', spk, { error_message: 'x' }],
        ['measurement.broadcast_results', L.admin, { job_id: 'j', results: {} }],
      ];
      for (const [subject, who, data] of cases) {
        expectError(await c.send(subject, who, { session_id: id, ...data }), 'session_not_found');
      }
    }
    expectError(await c.send('measurement.session_status', device('stranger'), { session_id: S }), 'forbidden');
    // Members may read it: devices without a role, and devices that left.
    await c.call('measurement.session_status', L.extras[0]!, { session_id: S });
    await c.call('lobby.leave', L.extras[0]!, { lobby_id: L.lobbyId });
    expect(await c.call('measurement.session_status', L.extras[0]!, { session_id: S })).toMatchObject({ session_id: S });
  });

  it('session - an Idempotency-Key on a step returns the first reply and changes nothing again', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 1 });
    const created = { job_id: 'j', lobby_id: L.lobbyId, speakers: L.speakers, microphones: L.microphones };
    const first = await c.call('measurement.create_session', L.admin, created, { idempotencyKey: 'create-1' });
    expect(await c.call('measurement.create_session', L.admin, created, { idempotencyKey: 'create-1' })).toEqual(first);
    const S = first.session_id;
    const [spk, mic] = sessionDevices(L);
    // A refusal is a first reply too: the key keeps answering it.
    const early = expectError(await c.send('measurement.ready', spk!, { session_id: S }, { idempotencyKey: 'r1' }), 'wrong_phase');
    await c.call('measurement.start_speaker', L.admin, { session_id: S });
    const replay = await c.send('measurement.ready', spk!, { session_id: S }, { idempotencyKey: 'r1' });
    expect(expectError(replay, 'wrong_phase')).toEqual(early);

    const ready = await c.call('measurement.ready', spk!, { session_id: S }, { idempotencyKey: 'r2' });
    expect(ready).toMatchObject({ status: 'accepted', phase: 'waiting_ready' });
    await c.call('measurement.ready', mic!, { session_id: S });
    const before = await snapshot(c, L, S);
    // The retry gets the first reply (accepted, waiting_ready), not today's answer (duplicate).
    expect(await c.call('measurement.ready', spk!, { session_id: S }, { idempotencyKey: 'r2' })).toEqual(ready);
    const plain = await c.call('measurement.ready', spk!, { session_id: S });
    expect(plain).toMatchObject({ status: 'duplicate', phase: 'speaker_downloading' });
    expect(await snapshot(c, L, S)).toEqual(before);
    // The same key for another request is refused.
    expectError(await c.send('measurement.speaker_audio_ready', spk!, { session_id: S }, { idempotencyKey: 'r2' }), 'invalid_request');
  });
});
