/**
 * The scenario driver: one lobby of app-like phones through one measurement session, the way a
 * group of users would do it. The admin creates the lobby, the others join by its code, the
 * admin (a microphone itself) gives out the roles once it sees everyone, creates the session,
 * and from then on only the phones' reactions drive it. Resolves with the outcome.
 */
import { randomUUID } from 'node:crypto';
import { Phone, type PhoneBehaviour } from './phone.js';
import { StepTimings } from './timings.js';
import type { PhoneTransport } from './transport.js';
import type { PhoneViolation, RequestFailure, TraceEntry } from './device.js';

export interface MeasurementOptions extends PhoneBehaviour {
  /** Loudspeakers (default 1). */
  speakers?: number;
  /** Microphones, the admin included as `microphone-1` (default 2). */
  microphones?: number;
  /** Joined phones given role `none` (default 0). */
  extras?: number;
  /** Probability that one (non-admin) device of the session stops answering (default 0). */
  dropRate?: number;
  /** Give up as `stalled` after this long (default 60 s). */
  timeoutMs?: number;
  /** Joiners type the code in lower case. */
  lowercaseCode?: boolean;
  /** The app's create_session -> start_speaker timer (default 500 ms). */
  startSpeakerDelayMs?: number;
  /** Shared step-timing recorder (e.g. for many sessions); a private one when absent. */
  timings?: StepTimings;
  /** Called for every request a phone sends and every broadcast it receives. */
  trace?: (phone: Phone, entry: TraceEntry) => void;
}

export type Outcome = 'completed' | 'failed' | 'stalled';

export interface MeasurementResult {
  outcome: Outcome;
  /** Why it failed or stalled. */
  reason?: string;
  lobbyId?: string;
  code?: string;
  sessionId?: string;
  durationMs: number;
  /** create_session reply latency (ms), when it came. */
  createSessionReplyMs?: number;
  startSpeakerSkipped: boolean;
  /** The device that was made to drop out, and after how many steps. */
  dropOut?: { deviceId: string; label: string; afterSteps: number; happened: boolean };
  violations: PhoneViolation[];
  warnings: string[];
  errors: RequestFailure[];
  /** Requests the phones sent, and how many of them were duplicate sends of a step. */
  requests: number;
  duplicates: number;
  timings: StepTimings;
}

/** Ends a run early with its outcome. */
class Stop extends Error {
  constructor(
    readonly outcome: Exclude<Outcome, 'completed'>,
    readonly reason: string,
  ) {
    super(reason);
  }
}

type Slot = { device_id: string; slot_id: string; slot_label: string | null };

export class Measurement {
  /** Where the run is, for progress views: a set-up stage, the session's phase, or the outcome. */
  stage = 'starting';
  readonly timings: StepTimings;
  readonly admin: Phone;
  readonly speakers: Phone[];
  /** The admin first. */
  readonly microphones: Phone[];
  readonly extras: Phone[];
  private readonly phones: Phone[];
  private deadline = Infinity;
  private readonly dropOut?: { phone: Phone; afterSteps: number };
  private cancelled?: string;
  private interrupt?: () => void;

  constructor(transport: PhoneTransport, private readonly opts: MeasurementOptions = {}) {
    const { speakers = 1, microphones = 2, extras = 0 } = opts;
    if (speakers < 1 || microphones < 1) throw new RangeError('a session needs at least one speaker and one microphone');
    this.timings = opts.timings ?? new StepTimings();
    const random = opts.random ?? Math.random;
    const dropIndex = random() < (opts.dropRate ?? 0) ? 1 + Math.floor(random() * (speakers + microphones - 1)) : -1;
    // Three steps per cycle for every device: drop out before one of the first cycle's.
    const dropAfter = Math.floor(random() * 3);
    let n = 0;
    const phone = (label: string, admin = false) => {
      const drop = n++ === dropIndex;
      return new Phone(transport, {
        ...opts,
        label,
        timings: this.timings,
        lowercaseCode: !admin && opts.lowercaseCode,
        dropAfterSteps: drop ? dropAfter : undefined,
      });
    };
    this.admin = phone('admin', true);
    this.microphones = [this.admin, ...Array.from({ length: microphones - 1 }, (_, i) => phone(`mic-${i + 2}`))];
    this.speakers = Array.from({ length: speakers }, (_, i) => phone(`speaker-${i + 1}`));
    this.extras = Array.from({ length: extras }, (_, i) => phone(`extra-${i + 1}`));
    this.phones = [...this.microphones, ...this.speakers, ...this.extras];
    const { trace } = opts;
    if (trace) for (const p of this.phones) p.on('trace', (entry) => trace(p, entry));
    const dropped = this.phones.find((p) => p.dropAfterSteps !== undefined);
    if (dropped) this.dropOut = { phone: dropped, afterSteps: dropAfter };
  }

  /** Ends the run now as `stalled` with `reason` (e.g. the simulator was interrupted). */
  cancel(reason: string): void {
    this.cancelled = reason;
    this.interrupt?.();
  }

  /** Refused requests so far, for progress views. */
  get errorCount(): number {
    return this.phones.reduce((sum, p) => sum + p.errors.length, 0);
  }

  async run(): Promise<MeasurementResult> {
    const started = performance.now();
    this.deadline = started + (this.opts.timeoutMs ?? 60_000);
    let outcome: Outcome = 'completed';
    let reason: string | undefined;
    try {
      await this.setUpLobby();
      await this.measure();
    } catch (err) {
      if (!(err instanceof Stop)) throw err;
      outcome = err.outcome;
      reason = err.reason;
      if (this.dropOut?.phone.dropped) reason += ` (${this.dropOut.phone.label} had dropped out)`;
    } finally {
      for (const p of this.phones) p.close();
    }
    // Replies still in flight (e.g. to the step that completed the session) belong to this run.
    await Promise.all(this.phones.map((p) => p.settled()));
    this.stage = outcome;
    const sessionId = this.admin.session?.sessionId;
    if (sessionId) this.timings.finish(sessionId);
    return {
      outcome,
      reason,
      lobbyId: this.admin.lobbyId,
      code: this.admin.code,
      sessionId,
      durationMs: performance.now() - started,
      createSessionReplyMs: this.admin.createSessionReplyMs,
      startSpeakerSkipped: this.admin.startSpeakerSkipped,
      dropOut: this.dropOut && {
        deviceId: this.dropOut.phone.deviceId,
        label: this.dropOut.phone.label,
        afterSteps: this.dropOut.afterSteps,
        happened: this.dropOut.phone.dropped,
      },
      violations: this.phones.flatMap((p) => p.violations),
      warnings: [...new Set(this.phones.flatMap((p) => p.warnings))],
      errors: this.phones.flatMap((p) => p.errors),
      requests: this.phones.reduce((sum, p) => sum + p.requestsSent, 0),
      duplicates: this.phones.reduce((sum, p) => sum + p.duplicatesSent, 0),
      timings: this.timings,
    };
  }

  /** Lobby, joins, roles: the admin acts only on what its own `lobby.get` replies show. */
  private async setUpLobby(): Promise<void> {
    const { admin } = this;
    this.stage = 'lobby';
    if (!(await admin.createLobby())) throw new Stop('failed', admin.failure ?? 'lobby.create failed');
    await admin.setProfile('smartphone');
    await admin.setStep(1);
    const others = this.phones.slice(1);
    await Promise.all(others.map((p) => p.join(admin.code!)));
    const ids = this.phones.map((p) => p.deviceId);
    await this.waitUntil('the admin to see every participant', () => ids.every((id) => admin.seesRole(id) !== undefined));

    this.stage = 'roles';
    await admin.setStep(2);
    const roles: ReadonlyArray<readonly [Phone, 'speaker' | 'microphone' | 'none', string | null, string | null]> = [
      ...this.speakers.map((p, i) => [p, 'speaker', `speaker-${i + 1}`, `Loudspeaker ${i + 1}`] as const),
      ...this.microphones.map((p, i) => [p, 'microphone', `microphone-${i + 1}`, null] as const),
      ...this.extras.map((p) => [p, 'none', null, null] as const),
    ];
    // One tap after another, as on the admin's screen.
    for (const [p, role, slot, label] of roles) {
      if (!(await admin.assignRole(p.deviceId, role, slot, label))) throw new Stop('failed', admin.failure!);
    }
    await this.waitUntil('the admin to see every role', () => roles.every(([p, role]) => admin.seesRole(p.deviceId) === role));
    await admin.shareRoom();
    await admin.setStep(3);
  }

  private async measure(): Promise<void> {
    const slot = (p: Phone, slot_id: string, slot_label: string | null): Slot => ({ device_id: p.deviceId, slot_id, slot_label });
    this.stage = 'created';
    const sessionId = await this.admin.createSession({
      job_id: `sim-job-${randomUUID()}`,
      speakers: this.speakers.map((p, i) => slot(p, `speaker-${i + 1}`, `Loudspeaker ${i + 1}`)),
      microphones: this.microphones.map((p, i) => slot(p, `microphone-${i + 1}`, null)),
    });
    if (!sessionId) throw new Stop('failed', this.admin.failure ?? 'create_session failed');
    const inSession = [...this.speakers, ...this.microphones];
    await this.waitUntil('session_complete at every session device', () => {
      // A dropped-out phone stops listening: its phase is stale.
      this.stage = inSession.find((p) => !p.dropped && p.session?.phase)?.session?.phase ?? this.stage;
      return inSession.every((p) => p.status === 'completed' || p.dropped);
    });
  }

  /**
   * Waits, woken by the phones' changes, until `done()`; stops the run as `failed` as soon as
   * a phone gives up, and as `stalled` at the deadline.
   */
  private waitUntil(what: string, done: () => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const finish = (err?: Stop) => {
        clearTimeout(timer);
        this.interrupt = undefined;
        for (const p of this.phones) p.off('change', check);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        const failed = this.phones.find((p) => p.status === 'failed');
        if (this.cancelled !== undefined) finish(new Stop('stalled', this.cancelled));
        else if (failed) finish(new Stop('failed', `${failed.label}: ${failed.failure}`));
        else if (done()) finish();
      };
      this.interrupt = check;
      const left = Math.max(0, this.deadline - performance.now());
      const timer = setTimeout(() => finish(new Stop('stalled', `no ${what} after ${Math.round((this.opts.timeoutMs ?? 60_000) / 1000)} s (stage ${this.stage})`)), left);
      for (const p of this.phones) p.on('change', check);
      check();
    });
  }
}

/** Runs one measurement with fresh phones on `transport`. */
export function runMeasurement(transport: PhoneTransport, opts: MeasurementOptions = {}): Promise<MeasurementResult> {
  return new Measurement(transport, opts).run();
}
