/**
 * Deadlines, departures and disconnects over real NATS and PostgreSQL: a passed phase deadline
 * fails the cycle with `timeout` exactly once; a device that leaves fails it at once; a device
 * reported disconnected fails it after the presence grace period, unless it comes back in time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Phase, Timeouts } from '../../subjects/index.js';
import {
  LobbyWatcher,
  createSession,
  cycleSteps,
  loggedEvents,
  micIds,
  setupLobby,
  step,
  type LobbySetup,
} from '../helpers/measurement.js';
import { startHarness } from '../helpers/service.js';

const GRACE_MS = 400;
const SHORT = 300;

let h: Awaited<ReturnType<typeof startHarness>>;
beforeAll(async () => {
  h = await startHarness({ PRESENCE_GRACE_MS: String(GRACE_MS) });
});
afterAll(async () => {
  await h?.stop();
});

/** The one `measurement.error` of a session, checked to have been logged exactly once. */
async function onlyError(L: LobbySetup) {
  const errors = (await loggedEvents(h.client, L)).filter((e) => e.type === 'measurement.error');
  expect(errors).toHaveLength(1);
  return errors[0]!;
}

const lateness: number[] = [];

describe('session deadlines', () => {
  // Each case: the per-session timeout made short, how many step groups to send before it, and
  // which steps of the last phase to leave out (so that `missing_device_ids` is a real subset).
  type Devices = (L: LobbySetup) => string[];
  const cases: Array<{ phase: Phase; key: keyof Timeouts; groups: number; skip: Devices; missing: Devices }> = [
    { phase: 'waiting_ready', key: 'ready_ms', groups: 2, skip: (L) => [micIds(L)[1]!], missing: (L) => [micIds(L)[1]!] },
    { phase: 'speaker_downloading', key: 'audio_ms', groups: 2, skip: () => [], missing: (L) => [L.speakers[0]!.device_id] },
    {
      phase: 'starting_recording',
      key: 'recording_start_ms',
      groups: 4,
      skip: (L) => [micIds(L)[0]!],
      missing: (L) => [micIds(L)[0]!],
    },
    { phase: 'playing', key: 'playback_ms', groups: 4, skip: () => [], missing: (L) => [L.speakers[0]!.device_id] },
    { phase: 'uploading', key: 'upload_ms', groups: 6, skip: (L) => micIds(L), missing: (L) => micIds(L) },
  ];

  for (const k of cases) {
    it(`session - the ${k.key} deadline fails phase ${k.phase} with timeout, once`, async () => {
      const c = h.client;
      const L = await setupLobby(c, { speakers: 1, microphones: 2 });
      const S = await createSession(c, L, { timeouts: { [k.key]: SHORT } });
      const w = await LobbyWatcher.watch(c, L.lobbyId);
      try {
        const fired = h.app.scheduler.fired;
        const groups = cycleSteps(L, S, 0).slice(0, k.groups);
        const skip = new Set(k.skip(L));
        for (const [g, group] of groups.entries()) {
          const last = g === groups.length - 1;
          await Promise.all(group.filter((s) => !(last && skip.has(s.device))).map((s) => step(c, s)));
        }
        const st = await c.call('measurement.session_status', L.admin, { session_id: S });
        expect(st.phase).toBe(k.phase);
        const deadline = Date.parse(st.deadline_at!);

        const [err] = await w.until('measurement.error', 1, 5_000);
        expect(err!.data).toEqual({
          session_id: S,
          error_device_id: null,
          error_message: expect.any(String),
          error_code: 'timeout',
          phase: k.phase,
          missing_device_ids: k.missing(L),
        });
        // "(all)": every joined device of the lobby, the admin included.
        expect(err!.targets.device_ids).toEqual(L.joined);
        const failed = await c.call('measurement.session_status', L.admin, { session_id: S });
        expect(failed).toMatchObject({ state: 'running', phase: 'failed', deadline_at: null });
        const firedAt = Date.parse(failed.updated_at);
        expect(firedAt).toBeGreaterThanOrEqual(deadline);
        lateness.push(firedAt - deadline);
        expect(h.app.scheduler.fired - fired).toBe(1);
        expect((await onlyError(L)).payload).toEqual(err!.data);
        // A retry gets a fresh deadline; the old one does not fire again.
        await c.call('measurement.start_speaker', L.admin, { session_id: S });
        await c.call('measurement.cancel_session', L.admin, { session_id: S });
        await w.until('measurement.session_cancelled');
        expect(w.count('measurement.error')).toBe(1);
      } finally {
        w.close();
      }
    });
  }

  it('session - deadlines fire close to their time, not a scheduler poll later', () => {
    expect(lateness).toHaveLength(cases.length);
    console.log(`[figures] deadline fired after its time by ${lateness.join(' / ')} ms (scheduler poll: 1000 ms)`);
    // The scheduler polls every second; a deadline set by this replica must not wait for that.
    for (const ms of lateness) expect(ms).toBeLessThan(500);
  });

  it('session - a device that leaves mid-cycle fails it at once with participant_left', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 2, microphones: 2 });
    const S = await createSession(c, L);
    const groups = cycleSteps(L, S, 0);
    for (const g of groups.slice(0, 4)) await Promise.all(g.map((s) => step(c, s)));
    // The other speaker is not needed by this cycle: its leaving changes nothing.
    await c.call('lobby.leave', L.speakers[1]!.device_id, { lobby_id: L.lobbyId });
    expect(await c.call('measurement.session_status', L.admin, { session_id: S })).toMatchObject({ phase: 'playing' });

    const before = (await loggedEvents(c, L)).at(-1)!.id;
    const mic = micIds(L)[1]!;
    await c.call('lobby.leave', mic, { lobby_id: L.lobbyId });
    // "At once": the failure is committed with the leave itself, before its reply.
    const st = await c.call('measurement.session_status', L.admin, { session_id: S });
    expect(st).toMatchObject({ phase: 'failed', deadline_at: null });
    const events = await loggedEvents(c, L, before);
    expect(events.map((e) => e.type)).toEqual(['measurement.error', 'measurement.phase_update', 'lobby.updated']);
    expect(events[0]!.payload).toEqual({
      session_id: S,
      // The device that left (the app shows who).
      error_device_id: mic,
      error_message: expect.any(String),
      error_code: 'participant_left',
      phase: 'playing',
      missing_device_ids: [mic],
    });
    expect(events[2]!.payload).toMatchObject({ type: 'participant_left', device_id: mic });
    // "(all)" means the lobby's joined devices at the time: the two that left are no longer among them.
    const [core] = await c.waitFor(L.lobbyId, 'measurement.error');
    expect(core!.targets.device_ids).toEqual(L.joined.filter((d) => d !== mic && d !== L.speakers[1]!.device_id));
    await onlyError(L);
  });

  it('session - a device reported disconnected fails the cycle after the grace period', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 2 });
    const S = await createSession(c, L);
    const w = await LobbyWatcher.watch(c, L.lobbyId);
    try {
      const groups = cycleSteps(L, S, 0);
      for (const g of groups.slice(0, 3)) await Promise.all(g.map((s) => step(c, s)));
      const mic = micIds(L)[0]!;
      const down = Date.now();
      expect(await c.call('lobby.presence', mic, { connected: false })).toEqual({ ok: true, lobbies: [L.lobbyId] });
      // Within the grace period the cycle keeps waiting for it.
      expect(await c.call('measurement.session_status', L.admin, { session_id: S })).toMatchObject({ phase: 'starting_recording' });
      const [err] = await w.until('measurement.error', 1, 5_000);
      expect(err!.data).toMatchObject({
        error_device_id: mic,
        error_code: 'device_disconnected',
        phase: 'starting_recording',
        missing_device_ids: [mic],
      });
      expect(Date.parse(err!.created_at) - down).toBeGreaterThanOrEqual(GRACE_MS - 5);
      await onlyError(L);
    } finally {
      w.close();
    }
  });

  it('session - a device already disconnected when the session is created fails its cycle after the grace period', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 1, microphones: 1 });
    const mic = L.microphones[0]!.device_id;
    await c.call('lobby.presence', mic, { connected: false });
    // Presence is reported on change only: no new report comes, the deadline is far away.
    const S = await createSession(c, L, { timeouts: { ready_ms: 60_000 } });
    const w = await LobbyWatcher.watch(c, L.lobbyId);
    try {
      await c.call('measurement.start_speaker', L.admin, { session_id: S });
      const [err] = await w.until('measurement.error', 1, 5_000);
      expect(err!.data).toMatchObject({ error_code: 'device_disconnected', phase: 'waiting_ready', missing_device_ids: [mic] });
      await onlyError(L);
    } finally {
      w.close();
    }
  });

  it('session - a device that reconnects within the grace period does not fail the cycle', async () => {
    const c = h.client;
    const L = await setupLobby(c, { speakers: 2, microphones: 2 });
    // The ready deadline is well past the grace period: whatever fails the cycle first tells.
    const S = await createSession(c, L, { timeouts: { ready_ms: GRACE_MS + 1_200 } });
    const w = await LobbyWatcher.watch(c, L.lobbyId);
    try {
      const [m1, m2] = micIds(L);
      const spk = L.speakers[0]!.device_id;
      await c.call('measurement.start_speaker', L.admin, { session_id: S });
      await Promise.all([spk, m2!].map((d) => c.call('measurement.ready', d, { session_id: S })));
      const down = Date.now();
      await c.call('lobby.presence', m1!, { connected: false });
      await c.call('lobby.presence', m1!, { connected: true });
      expect(Date.now() - down, 'the reconnect must come within the grace period').toBeLessThan(GRACE_MS);
      // A session device that this cycle does not need may stay away.
      await c.call('lobby.presence', L.speakers[1]!.device_id, { connected: false });
      const [err] = await w.until('measurement.error', 1, 5_000);
      expect(err!.data).toMatchObject({ error_code: 'timeout', phase: 'waiting_ready', missing_device_ids: [m1] });
      await onlyError(L);
      const presence = (await loggedEvents(c, L)).filter((e) => e.type === 'lobby.updated' && e.payload.type === 'presence_changed');
      expect(presence.map((e) => [e.payload.device_id, e.payload.connected])).toEqual([
        [m1, false],
        [m1, true],
        [L.speakers[1]!.device_id, false],
      ]);
    } finally {
      w.close();
    }
  });
});
