/**
 * Sessions held mid-cycle, for the memory (d) and restart (e) scenarios: a lobby of 5 devices
 * (1 speaker, 4 microphones, the admin one of them as in the app), a session with long
 * deadlines, its first cycle started, then nobody answers `waiting_ready` but `missing` (the
 * devices still to send ready; by default the speaker), so the session stays running.
 */
import { Subject, TIMEOUT_BOUNDS } from '../../subjects/index.js';
import type { Caller } from './client.js';
import { pool } from './stats.js';

export const MICROPHONES = 4;

export interface HeldSession {
  lobbyId: string;
  sessionId: string;
  speaker: string;
  microphones: string[];
}

/** Every deadline at the contract's maximum (10 min): a held session must not time out. */
export const LONG_TIMEOUTS = {
  ready_ms: TIMEOUT_BOUNDS.max,
  audio_ms: TIMEOUT_BOUNDS.max,
  recording_start_ms: TIMEOUT_BOUNDS.max,
  playback_ms: TIMEOUT_BOUNDS.max,
  upload_ms: TIMEOUT_BOUNDS.max,
};

/** Sets up one session and starts its cycle; the microphones say ready, the speaker does not. */
export async function holdSession(call: Caller, tag: string): Promise<HeldSession> {
  const admin = `${tag}-mic0`;
  const speaker = `${tag}-spk`;
  const microphones = [admin, ...Array.from({ length: MICROPHONES - 1 }, (_, i) => `${tag}-mic${i + 1}`)];
  const lobby = await call.call(Subject['lobby.create'], admin, {});
  for (const d of [speaker, ...microphones.slice(1)]) await call.call(Subject['lobby.join'], d, { code: lobby.code });
  await call.call(Subject['role.assign'], admin, { lobby_id: lobby.lobby_id, target_device_id: speaker, role: 'speaker', role_slot_id: 'speaker-1', role_slot_label: 'Loudspeaker 1' });
  for (const [i, d] of microphones.entries()) {
    await call.call(Subject['role.assign'], admin, { lobby_id: lobby.lobby_id, target_device_id: d, role: 'microphone', role_slot_id: `microphone-${i + 1}`, role_slot_label: `Microphone ${i + 1}` });
  }
  const created = await call.call(Subject['measurement.create_session'], admin, {
    job_id: `job-${tag}`,
    lobby_id: lobby.lobby_id,
    speakers: [{ device_id: speaker, slot_id: 'speaker-1', slot_label: 'Loudspeaker 1' }],
    microphones: microphones.map((d, i) => ({ device_id: d, slot_id: `microphone-${i + 1}`, slot_label: `Microphone ${i + 1}` })),
    timeouts: LONG_TIMEOUTS,
  });
  await call.call(Subject['measurement.start_speaker'], admin, { session_id: created.session_id });
  for (const d of microphones) await call.call(Subject['measurement.ready'], d, { session_id: created.session_id });
  return { lobbyId: lobby.lobby_id, sessionId: created.session_id, speaker, microphones };
}

/** `count` held sessions, set up `concurrency` at a time. */
export async function holdSessions(call: Caller, prefix: string, count: number, concurrency = 32): Promise<HeldSession[]> {
  const out: HeldSession[] = [];
  await pool(count, concurrency, async (i) => {
    out[i] = await holdSession(call, `${prefix}${i}`);
  });
  return out;
}
