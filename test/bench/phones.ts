/**
 * The app-like phones of src/sim over the bench's own NATS connection, for the scenarios that
 * run whole measurements (b, c). A thin adapter adds what the bench needs and the phone model
 * leaves to the app: per-session deadlines (`timeouts` in create_session, each within the
 * contract's 100 ms - 10 min), so a loaded service is measured rather than timed out.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import { Subject } from '../../subjects/index.js';
import { NatsPhoneTransport, type PhoneTransport, type SimulationSummary } from '../../src/sim/index.js';
import { LONG_TIMEOUTS } from './held.js';

export interface BenchPhones {
  transport: PhoneTransport;
  /** The transport's counters and the errors its routing saw. */
  nats: NatsPhoneTransport;
  close(): Promise<void>;
}

/** Phones on `<prefix>.` whose sessions get the longest deadlines the contract allows. */
export function benchPhones(nc: NatsConnection, prefix: string, requestTimeoutMs: number): BenchPhones {
  const nats = new NatsPhoneTransport(nc, { prefix, requestTimeoutMs });
  const transport: PhoneTransport = {
    request: (deviceId, subject, data) =>
      nats.request(deviceId, subject, subject === Subject['measurement.create_session'] ? { ...data, timeouts: LONG_TIMEOUTS } : data),
    attach: (deviceId, handler) => nats.attach(deviceId, handler),
  };
  return { transport, nats, close: () => nats.close() };
}

/** Why a run of measurements did not go as it should: failed or stalled sessions, violations. */
export function simErrors(s: SimulationSummary): string[] {
  const errors: string[] = [];
  const bad = s.sessions.failed + s.sessions.stalled;
  if (bad) {
    const reasons = s.failures.map((f) => `${f.count}x ${f.outcome}: ${f.reason}`).join('; ');
    errors.push(`${bad} of ${s.sessions.total} sessions did not complete: ${reasons}`);
  }
  if (s.violations.count) errors.push(`${s.violations.count} protocol violations (the app would drop those messages and stall)`);
  return errors;
}

/** The parts of the simulator's summary a bench report keeps. */
export function simDetails(s: SimulationSummary) {
  return {
    sessions: s.sessions,
    failures: s.failures,
    perStep: s.steps,
    unresolvedSteps: s.unresolvedSteps,
    startSpeakerSkipped: s.startSpeakerSkipped,
    violations: s.violations,
    requests: s.requests,
    throughput: s.throughput,
  };
}

/** One line for the table's notes: how many did not complete, and the commonest reasons. */
export function failureNote(s: SimulationSummary): string | undefined {
  const bad = s.sessions.failed + s.sessions.stalled;
  if (!bad) return undefined;
  const top = s.failures.slice(0, 3).map((f) => `${f.count}x ${f.outcome}: ${f.reason}`);
  return `${bad} of ${s.sessions.total} did not complete (${top.join('; ')})`;
}
