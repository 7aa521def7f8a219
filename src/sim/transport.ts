/**
 * How simulated phones reach the service. The same phones run over NATS (`nats-transport.ts`,
 * playing the Gateway itself) or over the v1 HTTP Gateway path (`POST /gateway/handle` in,
 * `/internal/broadcast` sink POSTs out), so a transport only moves requests and broadcasts.
 */
import type { EventName, Subject } from '../../subjects/index.js';

/** An error as the service sends it (NATS error body / HTTP `error`), or as the transport saw it. */
export interface WireError {
  code: string;
  message: string;
  details?: unknown;
}

/** A request's outcome: the reply body, or the error status and body. */
export type RequestResult =
  | { ok: true; data: any }
  | {
      ok: false;
      /** The HTTP-like status (`Nats-Service-Error-Code`); 0 when no reply arrived at all. */
      status: number;
      error: WireError;
    };

/** Delivers one broadcast (its `event` and `data`) to one phone. */
export type PushHandler = (event: EventName, data: Record<string, unknown>) => void;

export interface PhoneTransport {
  /**
   * Sends `data` on `subject` as `deviceId` (the `Device-Id` the Gateway would set); resolves
   * with the reply or the error body. Never rejects: a lost request is `{ok: false, status: 0}`.
   */
  request(deviceId: string, subject: Subject, data: Record<string, unknown>): Promise<RequestResult>;
  /**
   * Delivers every broadcast whose envelope targets `deviceId` to `handler`, at most once per
   * envelope id (the Gateway's de-duplication). Returns the function that detaches the phone.
   */
  attach(deviceId: string, handler: PushHandler): () => void;
}

/** A transport that also counts what it carried (for the simulator's throughput figures). */
export interface CountingTransport extends PhoneTransport {
  readonly counters: TransportCounters;
}

export interface TransportCounters {
  /** Requests sent. */
  requests: number;
  /** Requests that came back with an error (or none). */
  errors: number;
  /** Broadcast envelopes received (before de-duplication). */
  broadcasts: number;
  /** Envelopes dropped because their id was already seen for that lobby. */
  duplicateBroadcasts: number;
}
