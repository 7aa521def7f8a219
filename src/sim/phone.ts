/**
 * One simulated phone: a small reactive state machine that behaves like the shipping Flutter app
 * (CONTRACT section 8). It only reacts to what it receives, with the app's exact `data` keys;
 * it checks every field the app casts and, like the app, drops a message it cannot read (the
 * violation is recorded, and the measurement then stalls as it would on a real phone).
 *
 * The admin's own actions (create the lobby, assign roles, create the session...) are methods
 * the scenario driver calls, as the user's taps would.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventName, LobbyUpdateType, StepStatus, Subject, type Role } from '../../subjects/index.js';
import { APP_PHASES, DEFAULT_AUDIO_DURATION_SECONDS, checkPush, staleness, type LobbyView } from './checks.js';
import { Device } from './device.js';
import { StepTimings, type StepName } from './timings.js';
import type { PhoneTransport } from './transport.js';

/** How the phone's user and network behave. */
export interface PhoneBehaviour {
  /** Each step waits a random 0..jitterMs before it is sent (default 0). */
  jitterMs?: number;
  /** Probability that a step is sent twice, at once (a retry or double tap; default 0). */
  duplicateRate?: number;
  /** How long the speaker "plays" the signal before `playback_complete` (default 0). */
  playbackMs?: number;
  /** Source of randomness for jitter and duplicates (ids always use crypto.randomUUID). */
  random?: () => number;
}

export interface PhoneOptions extends PhoneBehaviour {
  /** A name for reports, e.g. `admin` or `mic-2`. */
  label?: string;
  /** Stops answering (sends nothing more) after this many measurement steps. */
  dropAfterSteps?: number;
  /** Types the join code in lower case, as a user might. */
  lowercaseCode?: boolean;
  /** The app's fixed timer from sending `create_session` to `start_speaker` (500 ms). */
  startSpeakerDelayMs?: number;
  /** Whether the admin re-sends its room snapshot once a measurement runs (default true). */
  shareRoomDuringSession?: boolean;
  /** Shared recorder of step timings; a private one when absent. */
  timings?: StepTimings;
}

/** The app's delay from sending `create_session` to sending `start_speaker`. */
export const APP_START_SPEAKER_DELAY_MS = 500;

/** Events whose loss stalls the measurement: a violation in them fails the phone. */
const REACTS_TO: ReadonlySet<string> = new Set<string>([
  EventName['measurement.start_measurement'],
  EventName['measurement.request_audio'],
  EventName['measurement.start_recording'],
  EventName['measurement.start_playback'],
  EventName['measurement.stop_recording'],
  EventName['measurement.session_complete'],
]);

interface SessionView {
  sessionId: string;
  speakerDeviceId?: string;
  speakerSlotId?: string;
  phase?: string;
  audioDurationSeconds?: number;
}

export class Phone extends Device {
  readonly label: string;
  readonly timings: StepTimings;
  isAdmin = false;
  lobbyId?: string;
  /** The code as this phone typed it. */
  code?: string;
  lobby?: LobbyView;
  session?: SessionView;
  /** The create_session reply was late, so the app's timer skipped `start_speaker`. */
  startSpeakerSkipped = false;
  /** Stopped answering (a drop-out). */
  dropped = false;
  stepsSent = 0;
  /** Steps sent a second time (duplicate sends). */
  duplicatesSent = 0;
  /** The create_session reply latency (ms), once it came. */
  createSessionReplyMs?: number;
  private detach: (() => void) | undefined;
  private lobbyGetSeq = 0;
  private lobbyViewSeq = 0;
  private stepIndex = 0;
  private profileId = 'smartphone';
  private roomSharedFor?: string;

  constructor(
    transport: PhoneTransport,
    private readonly opts: PhoneOptions = {},
  ) {
    super(transport);
    this.label = opts.label ?? this.deviceId.slice(0, 8);
    this.timings = opts.timings ?? new StepTimings();
    this.detach = transport.attach(this.deviceId, (event, data) => this.onPush(event, data));
  }

  /** When this phone is set to drop out (stop answering). */
  get dropAfterSteps(): number | undefined {
    return this.opts.dropAfterSteps;
  }

  /** The role `deviceId` has in this phone's last lobby view; undefined when not listed. */
  seesRole(deviceId: string): string | undefined {
    return this.lobby?.participants.find((p) => p.device_id === deviceId)?.role;
  }

  /** Stops receiving; pending reactions send nothing more. */
  close(): void {
    this.detach?.();
    this.detach = undefined;
  }

  // ---- the user's actions ----------------------------------------------------------------------

  /** Creates a lobby (`lobby.create {}`); the phone becomes its admin. */
  async createLobby(): Promise<boolean> {
    this.isAdmin = true;
    const r = await this.call(Subject['lobby.create'], {});
    if (!r.usable) return this.fail(`lobby.create refused: ${r.code}`);
    this.lobbyId = r.data.lobby_id;
    this.code = r.data.code;
    this.lobby = r.data;
    this.setStatus('in_lobby');
    return true;
  }

  /** Joins by code, typed as the user would (trimmed; lower case when so configured). */
  async join(code: string): Promise<boolean> {
    const typed = this.opts.lowercaseCode ? code.trim().toLowerCase() : code.trim();
    // Known before the reply: the join's own lobby.updated may arrive first.
    this.code = typed;
    const r = await this.call(Subject['lobby.join'], { code: typed });
    if (!r.usable) return this.fail(`lobby.join refused: ${r.code}`);
    this.lobbyId = r.data.lobby_id;
    this.lobby = r.data;
    this.setStatus('in_lobby');
    return true;
  }

  /** `role.assign`; role `none` comes with both slot fields null, as from the app. */
  async assignRole(target: string, role: Role, slotId: string | null, slotLabel: string | null): Promise<boolean> {
    const none = role === 'none';
    const r = await this.call(Subject['role.assign'], {
      lobby_id: this.lobbyId,
      target_device_id: target,
      role,
      role_slot_id: none ? null : slotId,
      role_slot_label: none ? null : slotLabel,
    });
    return r.usable || this.fail(`role.assign refused: ${r.code}`);
  }

  /** The admin moves its wizard to `step` (0-6) and shares it. */
  async setStep(step: number): Promise<void> {
    this.stepIndex = step;
    await this.call(Subject['lobby.step_update'], { lobby_id: this.lobbyId, step_index: step });
  }

  async setProfile(profileId: 'high_end' | 'smartphone'): Promise<void> {
    this.profileId = profileId;
    await this.call(Subject['lobby.profile_update'], { lobby_id: this.lobbyId, profile_id: profileId });
  }

  /** Shares the room model (allowed while a measurement runs, too). */
  async shareRoom(): Promise<void> {
    const room = { width_m: 5.2, length_m: 7.4, height_m: 2.6, shared_by: this.deviceId, at: Date.now() };
    await this.call(Subject['lobby.room_snapshot'], { lobby_id: this.lobbyId, room });
  }

  /**
   * `measurement.create_session`, then the app's fixed timer: `start_speaker` 500 ms after the
   * request was SENT, only if its reply has arrived by then. Resolves with the session id once
   * the reply is in (undefined when refused or unreadable).
   */
  async createSession(body: {
    job_id: string;
    speakers: Array<{ device_id: string; slot_id: string; slot_label: string | null }>;
    microphones: Array<{ device_id: string; slot_id: string; slot_label: string | null }>;
  }): Promise<string | undefined> {
    const sentAt = performance.now();
    const reply = this.call(Subject['measurement.create_session'], { ...body, lobby_id: this.lobbyId }).then((r) => {
      this.createSessionReplyMs = performance.now() - sentAt;
      this.timings.createSessionReplyMs.push(this.createSessionReplyMs);
      if (!r.usable) {
        this.fail(`measurement.create_session refused: ${r.code}`);
        return undefined;
      }
      const duration = r.data.audio_duration_seconds;
      this.session = {
        sessionId: r.data.session_id,
        audioDurationSeconds: typeof duration === 'number' ? duration : DEFAULT_AUDIO_DURATION_SECONDS,
      };
      this.changed();
      return this.session.sessionId as string;
    });
    let sessionId: string | undefined;
    let replied = false;
    void reply.then((id) => {
      sessionId = id;
      replied = true;
    });
    await sleep(this.opts.startSpeakerDelayMs ?? APP_START_SPEAKER_DELAY_MS);
    if (!replied) {
      this.startSpeakerSkipped = true;
      this.fail('start_speaker skipped: the create_session reply was not there 500 ms after sending it');
      return reply;
    }
    if (sessionId) void this.step('start_speaker', Subject['measurement.start_speaker'], { session_id: sessionId }, 0);
    return sessionId;
  }

  // ---- reactions -------------------------------------------------------------------------------

  private onPush(event: EventName, data: Record<string, unknown>): void {
    if (this.dropped || !this.detach) return;
    this.emit('trace', { direction: 'received', name: event, data });
    const violations = checkPush(event, data);
    if (violations.length) {
      // The app drops a message it cannot read; a dropped command stalls the measurement.
      this.violate(violations, REACTS_TO.has(event));
      return;
    }
    if (event === EventName['lobby.updated']) return this.onLobbyUpdated(data);
    if (!event.startsWith('measurement.')) return;
    const sessionId = data.session_id as string;
    this.timings.received(event, sessionId);
    if (!this.adopt(event, sessionId)) return;
    this.react(event, data, this.session!);
  }

  private onLobbyUpdated(change: Record<string, unknown>): void {
    void this.refreshLobby(change);
    if (this.isAdmin && change.type === LobbyUpdateType.enum.participant_joined) {
      void this.call(Subject['lobby.step_update'], { lobby_id: this.lobbyId, step_index: this.stepIndex });
      void this.call(Subject['lobby.profile_update'], { lobby_id: this.lobbyId, profile_id: this.profileId });
    }
  }

  /** Whether the push belongs to this phone's session (a `start_measurement` may begin one). */
  private adopt(event: EventName, sessionId: string): boolean {
    const current = this.session;
    if (current?.sessionId === sessionId) return this.status !== 'completed' && this.status !== 'failed';
    const free = !current || this.status === 'completed' || this.status === 'failed';
    if (event === EventName['measurement.start_measurement'] && free) {
      this.session = { sessionId };
      return true;
    }
    // "(all)" broadcasts of a session this phone is not in (it has no role) need nothing.
    if (current) this.warn(`${event} of session ${sessionId} while in ${current.sessionId}`);
    return false;
  }

  private react(event: EventName, data: Record<string, unknown>, s: SessionView): void {
    const sid = s.sessionId;
    switch (event) {
      case EventName['measurement.start_measurement']:
        s.speakerDeviceId = data.speaker_device_id as string;
        s.speakerSlotId = data.current_speaker_slot_id as string;
        this.setStatus('in_session');
        if (this.isAdmin && this.opts.shareRoomDuringSession !== false && this.roomSharedFor !== sid) {
          this.roomSharedFor = sid;
          void this.shareRoom();
        }
        return void this.step('ready', Subject['measurement.ready'], { session_id: sid, device_id: this.deviceId });
      case EventName['measurement.request_audio']: {
        const hash = createHash('sha256').update(String(data.audio_url)).digest('hex');
        const body = { session_id: sid, device_id: this.deviceId, audio_hash: hash };
        return void this.step('speaker_audio_ready', Subject['measurement.speaker_audio_ready'], body);
      }
      case EventName['measurement.start_recording']:
        return void this.step('recording_started', Subject['measurement.recording_started'], { session_id: sid, device_id: this.deviceId });
      case EventName['measurement.start_playback']:
        return void this.step('playback_complete', Subject['measurement.playback_complete'], { session_id: sid }, this.opts.playbackMs ?? 0);
      case EventName['measurement.stop_recording']: {
        const upload_name = `recording_${this.deviceId}_${data.speaker_slot_id as string}.wav`;
        return void this.step('recording_uploaded', Subject['measurement.recording_uploaded'], { session_id: sid, upload_name });
      }
      case EventName['measurement.phase_update']:
        s.phase = String(data.phase);
        if (!APP_PHASES.has(s.phase)) this.warn(`unknown phase "${s.phase}" (the app shows idle)`);
        return this.changed();
      case EventName['measurement.session_complete']:
        s.phase = 'completed';
        return this.setStatus('completed');
      case EventName['measurement.error']:
        return void this.fail(`measurement.error ${String(data.error_code)} in ${String(data.phase)}: ${String(data.error_message)}`);
      case EventName['measurement.session_cancelled']:
        return void this.fail(`session cancelled: ${String(data.reason)}`);
      default:
        // speaker_complete (the app ignores it) and analysis_results need no answer.
        return;
    }
  }

  /** The app's `lobby.get {code}` after every `lobby.updated`; it must show the change. */
  private async refreshLobby(change: Record<string, unknown>): Promise<void> {
    // The creator learns the code from the create reply, which may come after the broadcast.
    if (this.code === undefined) return;
    const seq = ++this.lobbyGetSeq;
    const r = await this.call(Subject['lobby.get'], { code: this.code });
    if (!r.usable || seq < this.lobbyViewSeq) return;
    this.lobbyViewSeq = seq;
    const view = r.data as LobbyView;
    const stale = staleness(change, view);
    if (stale) this.violate([{ source: `reply ${Subject['lobby.get']}`, field: 'participants', problem: stale }], false);
    this.lobby = view;
    this.changed();
  }

  // ---- sending ---------------------------------------------------------------------------------

  /** One measurement step: jitter, maybe a duplicate, timing; nothing once dropped out. */
  private async step(step: StepName, subject: Subject, data: Record<string, unknown>, delayMs?: number): Promise<void> {
    if (this.dropped) return;
    if (this.opts.dropAfterSteps !== undefined && this.stepsSent >= this.opts.dropAfterSteps) {
      this.dropped = true;
      return this.changed();
    }
    const wait = delayMs ?? this.random() * (this.opts.jitterMs ?? 0);
    if (wait > 0) await sleep(wait);
    if (!this.detach) return;
    this.stepsSent++;
    const rec = this.timings.sent(step, data.session_id as string, this.deviceId);
    const twice = this.random() < (this.opts.duplicateRate ?? 0);
    if (twice) this.duplicatesSent++;
    // Both copies go out at once, so either may be the one the service takes.
    const [r, copy] = await Promise.all([this.call(subject, data), twice ? this.call(subject, data, true) : undefined]);
    const took = [r, copy].find((x) => x?.usable && x.data.status !== StepStatus.enum.duplicate);
    rec.status = took?.usable ? String(took.data.status) : r.usable ? String(r.data.status) : r.code;
    if (!r.usable) this.fail(`${subject} refused: ${r.code}`);
  }

  private random(): number {
    return (this.opts.random ?? Math.random)();
  }
}
