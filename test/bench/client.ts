/**
 * A plain NATS caller for the scenarios that do not need app-like phones (joins, idle
 * lobbies): one request per command with the `Device-Id` header, replies parsed as the
 * contract's reply type, error replies thrown as `CommandError`.
 */
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { Header, type ReplyOf, type RequestOf, type Subject } from '../../subjects/index.js';

const encoder = new TextEncoder();

/** An error reply of the service (`Nats-Service-Error-Code` set). */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly subject: string,
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`${subject}: ${status} ${code}: ${message}`);
  }
}

export interface Caller {
  call<S extends Subject>(subject: S, deviceId: string, data: RequestOf<S>, timeoutMs?: number): Promise<ReplyOf<S>>;
}

/** Requests on `<prefix>.<subject>`; `prefix` as `NATS_SUBJECT_PREFIX` takes it (no dot). */
export function caller(nc: NatsConnection, prefix: string): Caller {
  return {
    async call(subject, deviceId, data, timeoutMs = 30_000) {
      const h = natsHeaders();
      h.set(Header.deviceId, deviceId);
      const m = await nc.request(`${prefix}.${subject}`, encoder.encode(JSON.stringify(data)), { headers: h, timeout: timeoutMs });
      const status = m.headers?.get(Header.serviceErrorCode);
      if (status) {
        const body = m.json<{ error?: { code?: string; message?: string } }>();
        throw new CommandError(subject, Number(status), body.error?.code ?? 'unknown', body.error?.message ?? m.headers!.get(Header.serviceError));
      }
      return m.json();
    },
  };
}
