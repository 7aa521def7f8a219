/**
 * The bookkeeping half of a simulated phone: its identity, sending a request and checking the
 * reply the way the app reads it, and the record of what went wrong (protocol violations,
 * refused requests, warnings, the reason it gave up). `Phone` adds the app's behaviour.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Subject } from '../../subjects/index.js';
import { checkReply, type Violation } from './checks.js';
import type { PhoneTransport, RequestResult } from './transport.js';

export type PhoneStatus = 'idle' | 'in_lobby' | 'in_session' | 'completed' | 'failed';

export interface PhoneViolation extends Violation {
  deviceId: string;
}

export interface RequestFailure {
  deviceId: string;
  subject: Subject;
  status: number;
  code: string;
  message: string;
  /** Whether it was the second copy of a duplicated step. */
  duplicate: boolean;
}

/** One message a phone sent or received, for narrating a run. */
export interface TraceEntry {
  direction: 'sent' | 'received';
  /** The subject sent or the event received. */
  name: string;
  data: Record<string, unknown>;
}

/** A reply the app could use, or why not (an error code, or `protocol_violation`). */
export type Usable = { usable: true; data: any } | { usable: false; code: string };

/**
 * Emits `change` whenever anything a driver may wait for changes, and `trace` for every
 * request sent and broadcast received.
 */
export class Device extends EventEmitter<{ change: []; trace: [TraceEntry] }> {
  /** A UUID v4, new per app launch, as the app's `device_id`. */
  readonly deviceId = randomUUID();
  readonly violations: PhoneViolation[] = [];
  /** Things the app tolerates but logs (unknown phases, pushes of another session). */
  readonly warnings: string[] = [];
  readonly errors: RequestFailure[] = [];
  status: PhoneStatus = 'idle';
  /** Why the phone gave up (set with status `failed`). */
  failure?: string;
  requestsSent = 0;

  constructor(protected readonly transport: PhoneTransport) {
    super();
  }

  private readonly inFlight = new Set<Promise<Usable>>();

  /** Resolves once every request sent so far has its reply (or gave up waiting for it). */
  async settled(): Promise<void> {
    while (this.inFlight.size) await Promise.all(this.inFlight);
  }

  /** Sends one request and checks its reply the way the app reads it. */
  protected call(subject: Subject, data: Record<string, unknown>, duplicate = false): Promise<Usable> {
    const p = this.send(subject, data, duplicate);
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
    return p;
  }

  private async send(subject: Subject, data: Record<string, unknown>, duplicate: boolean): Promise<Usable> {
    this.requestsSent++;
    this.emit('trace', { direction: 'sent', name: subject, data });
    let r: RequestResult;
    try {
      r = await this.transport.request(this.deviceId, subject, data);
    } catch (err) {
      r = { ok: false, status: 0, error: { code: 'transport_error', message: err instanceof Error ? err.message : String(err) } };
    }
    if (!r.ok) {
      const { code, message } = r.error;
      this.errors.push({ deviceId: this.deviceId, subject, status: r.status, code, message, duplicate });
      this.changed();
      return { usable: false, code };
    }
    const violations = checkReply(subject, r.data);
    if (violations.length) {
      // The app cannot read this reply: whatever it was for does not happen.
      this.violate(violations, true);
      return { usable: false, code: 'protocol_violation' };
    }
    return { usable: true, data: r.data };
  }

  /** Records violations; a fatal one (the app loses something it needs) fails the phone. */
  protected violate(found: Violation[], fatal: boolean): void {
    this.violations.push(...found.map((v) => ({ ...v, deviceId: this.deviceId })));
    const v = found[0]!;
    if (fatal) this.fail(`protocol violation: ${v.source} ${v.field}: ${v.problem}`);
    else this.changed();
  }

  protected warn(text: string): void {
    if (!this.warnings.includes(text)) this.warnings.push(text);
  }

  /** Gives up (the first reason wins); always false, for `return this.fail(...)`. */
  protected fail(reason: string): false {
    if (this.status !== 'failed') {
      this.failure = reason;
      this.status = 'failed';
    }
    this.changed();
    return false;
  }

  /** A session may begin after any other has ended; nothing else leaves `failed`/`completed`. */
  protected setStatus(status: PhoneStatus): void {
    if (status === 'in_session' || (this.status !== 'failed' && this.status !== 'completed')) this.status = status;
    this.changed();
  }

  protected changed(): void {
    this.emit('change');
  }
}
