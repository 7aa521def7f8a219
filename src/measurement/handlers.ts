/**
 * Measurement session commands (CONTRACT section 3, "Measurement sessions"). Creation runs in
 * a lobby transaction; every later step goes through the session's actor (`Sessions.step`).
 */
import { DEFAULT_SIGNAL_DURATION_SECONDS, type ReplyOf, type RequestOf, type Subject } from '../../subjects/index.js';
import type { Config } from '../config.js';
import { SessionEntity } from '../db/entities.js';
import { joinedDeviceIds } from '../lobby/rules.js';
import { loadParticipants, lockLobby } from '../lobby/store.js';
import { toLobby } from '../lobby/view.js';
import type { UnitOfWork } from '../outbox/unit-of-work.js';
import type { CommandContext } from '../transport/context.js';
import type { Handler, HandlerTable } from '../transport/dispatch.js';
import type { Step } from './model.js';
import type { Sessions } from './sessions.js';
import { createSession, sessionDevices, statusOf } from './transition.js';

export interface MeasurementDeps {
  uow: UnitOfWork;
  config: Config;
  sessions: Sessions;
}

/** Device steps: subject -> the `Step` it sends to the session actor. */
const steps = {
  'measurement.start_speaker': (_r: RequestOf<'measurement.start_speaker'>, d: string): Step => ({ kind: 'start_speaker', device_id: d }),
  'measurement.ready': (_r: RequestOf<'measurement.ready'>, d: string): Step => ({ kind: 'ready', device_id: d }),
  'measurement.speaker_audio_ready': (r: RequestOf<'measurement.speaker_audio_ready'>, d: string): Step => ({
    kind: 'speaker_audio_ready',
    device_id: d,
    audio_hash: r.audio_hash,
  }),
  'measurement.recording_started': (_r: RequestOf<'measurement.recording_started'>, d: string): Step => ({
    kind: 'recording_started',
    device_id: d,
  }),
  'measurement.playback_complete': (_r: RequestOf<'measurement.playback_complete'>, d: string): Step => ({
    kind: 'playback_complete',
    device_id: d,
  }),
  'measurement.recording_uploaded': (r: RequestOf<'measurement.recording_uploaded'>, d: string): Step => ({
    kind: 'recording_uploaded',
    device_id: d,
    upload_name: r.upload_name,
  }),
  'measurement.cancel_session': (r: RequestOf<'measurement.cancel_session'>, d: string): Step => ({
    kind: 'cancel',
    device_id: d,
    reason: r.reason,
  }),
  'measurement.error': (r: RequestOf<'measurement.error'>, d: string): Step => ({
    kind: 'error',
    device_id: d,
    error_message: r.error_message,
    error_code: r.error_code,
  }),
} as const satisfies Partial<Record<Subject, (r: never, d: string) => Step>>;

export function createMeasurementHandlers({ uow, config, sessions }: MeasurementDeps) {
  const stepHandlers = Object.fromEntries(
    Object.entries(steps).map(([subject, toStep]) => [
      subject,
      ((req: { session_id: string }, ctx: CommandContext) =>
        sessions.step(req.session_id, (toStep as (r: unknown, d: string) => Step)(req, ctx.deviceId), ctx)) as Handler,
    ]),
  ) as Record<keyof typeof steps, Handler>;

  return {
    ...stepHandlers,

    async 'measurement.create_session'(
      req: RequestOf<'measurement.create_session'>,
      ctx: CommandContext,
    ): Promise<ReplyOf<'measurement.create_session'>> {
      return uow.run(async (tx) => {
        const lobby = await lockLobby(tx.em, req.lobby_id);
        const members = await loadParticipants(tx.em, lobby.id);
        const view = toLobby(lobby, members);
        const now = Date.now();
        const m = config.measurement;
        const result = createSession(
          { ...req, session_id: crypto.randomUUID(), device_id: ctx.deviceId },
          view,
          {
            ...sessions.stepContext(lobby, joinedDeviceIds(members), now),
            defaults: {
              ready_ms: m.readyMs,
              audio_ms: m.audioMs,
              recording_start_ms: m.recordingStartMs,
              playback_grace_ms: m.playbackGraceMs,
              upload_ms: m.uploadMs,
            },
            default_signal_duration_seconds: DEFAULT_SIGNAL_DURATION_SECONDS,
            default_next_speaker_delay_ms: m.nextSpeakerDelayMs,
          },
        );
        const s = result.session;
        // A listed device the Gateway reported disconnected (and not back since) counts as
        // disconnected from now on: presence is reported on change only, so the session would
        // otherwise wait for a whole phase deadline instead of the grace period.
        const listed = new Set(sessionDevices(s));
        for (const p of view.participants) {
          if (!p.connected && listed.has(p.device_id)) s.disconnected[p.device_id] = now;
        }
        const row = tx.em.create(SessionEntity, {
          id: s.session_id,
          lobbyId: s.lobby_id,
          jobId: s.job_id,
          state: s.state,
          phase: s.phase,
          wakeAt: null,
          doc: s,
          createdAt: new Date(s.created_at),
          updatedAt: new Date(s.updated_at),
        });
        await sessions.persist(tx, { lobby, members }, row, result);
        return {
          session_id: s.session_id,
          job_id: s.job_id,
          lobby_id: s.lobby_id,
          state: s.state,
          total_speakers: s.speakers.length,
          total_microphones: s.microphones.length,
          audio_duration_seconds: s.signal_duration_seconds,
        };
      }, ctx.idempotency);
    },

    async 'measurement.session_status'(
      req: RequestOf<'measurement.session_status'>,
      ctx: CommandContext,
    ): Promise<ReplyOf<'measurement.session_status'>> {
      return statusOf(await sessions.read(req.session_id, ctx.trusted ? null : ctx.deviceId));
    },

    async 'measurement.broadcast_results'(
      req: RequestOf<'measurement.broadcast_results'>,
      ctx: CommandContext,
    ): Promise<ReplyOf<'measurement.broadcast_results'>> {
      return sessions.step(
        req.session_id,
        { kind: 'broadcast_results', device_id: ctx.deviceId, job_id: req.job_id, results: req.results },
        ctx,
        () => ({ ok: true as const }),
      );
    },
  } satisfies HandlerTable;
}
