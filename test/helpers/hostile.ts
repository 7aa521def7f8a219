/**
 * Senders for the hostile-input catalogue: NATS requests with any headers and raw bodies, HTTP
 * requests with raw bodies, and a count of every request sent (the catalogue prints it).
 */
import { headers as natsHeaders } from '@nats-io/nats-core';
import { expect } from 'vitest';
import { ErrorStatus, Header, type ErrorBody, type ErrorCode, type Subject } from '../../subjects/index.js';
import type { GatewayClient } from './service.js';

export interface Answer {
  /** NATS: the `Nats-Service-Error-Code` (200 for a success); HTTP: the status. */
  status: number;
  /** The reply (a success) or the error body. */
  body: any;
  /** Reply headers (NATS and HTTP alike, by lower-case name for HTTP). */
  header(name: string): string | undefined;
}

export class Hostile {
  /** Requests sent so far. */
  sent = 0;

  constructor(
    private readonly client: GatewayClient,
    private readonly httpUrl: string,
  ) {}

  /**
   * A NATS request on `subject` with exactly `headers` (no Device-Id unless given) and `body`:
   * a value is sent as JSON, a string or bytes as they are.
   */
  async nats(subject: Subject, headers: Record<string, string>, body: unknown): Promise<Answer> {
    this.sent++;
    const h = natsHeaders();
    for (const [k, v] of Object.entries(headers)) h.set(k, v);
    const payload = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    const msg = await this.client.nc.request(`${this.client.prefix}${subject}`, payload, { headers: h, timeout: 10_000 });
    const code = msg.headers?.get(Header.serviceErrorCode);
    return {
      status: code ? Number(code) : 200,
      body: msg.data.length > 0 ? msg.json() : undefined,
      header: (name) => msg.headers?.get(name) || undefined,
    };
  }

  /** `nats` as `device` (the Device-Id header), with more headers if given. */
  as(device: string, subject: Subject, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    return this.nats(subject, { [Header.deviceId]: device, ...headers }, body);
  }

  /** An HTTP request; `body` as for `nats`. */
  async http(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    this.sent++;
    const payload = body === undefined || typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    const res = await fetch(`${this.httpUrl}${path}`, {
      method,
      headers: payload === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: payload as string | Uint8Array | undefined,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, header: (name) => res.headers.get(name) ?? undefined };
  }

  /** `POST /gateway/handle`: `event` with `data` as `device`. */
  gateway(device: string, event: string, data: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    return this.http('POST', '/gateway/handle', { client: { device_id: device, connection_id: `conn-${device.slice(0, 32)}` }, message: { event, data } }, headers);
  }
}

/** Expects a success; returns the reply. */
export function ok(a: Answer): any {
  expect(a.status, JSON.stringify(a.body)?.slice(0, 500)).toBe(200);
  return a.body;
}

/** Expects the error `code` with its status (HTTP status or `Nats-Service-Error-Code`); returns the error. */
export function refused(a: Answer, code: ErrorCode): ErrorBody['error'] {
  expect(a.body?.error?.code, JSON.stringify(a.body)?.slice(0, 500)).toBe(code);
  expect(a.status).toBe(ErrorStatus[code]);
  return a.body.error;
}

/** Expects `invalid_request` with an issue at `path`. */
export function invalidAt(a: Answer, path: string): void {
  const error = refused(a, 'invalid_request');
  const paths = ((error.details?.issues ?? []) as Array<{ path: string }>).map((i) => i.path);
  expect(paths, error.message).toContain(path);
}
