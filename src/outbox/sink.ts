/**
 * The optional v1 sink (CONTRACT section 5): with `GATEWAY_URL` set, every broadcast is also
 * POSTed to `{GATEWAY_URL}/internal/broadcast` as `{event, data, targets: {device_ids}}`.
 *
 * A second `Destination` of the same outbox relay, marking `sink_delivered_at`: it inherits
 * the relay's guarantees (driven from the event log, in id order per lobby, one replica at a
 * time under its own lease, retried with back-off, nothing lost across restarts). Delivery is
 * at least once: after a crash between the Gateway's 2xx and the mark, an event is sent again
 * with the same `X-Event-Id`.
 */
import {
  Header,
  HttpHeader,
  SINK_PATH,
  broadcastMsgId,
  type EventName,
  type SinkBroadcast,
} from '../../subjects/index.js';
import type { EventRow } from './event-row.js';
import type { Destination } from './relay.js';

export interface SinkOptions {
  /** `GATEWAY_URL`, without a trailing slash. */
  gatewayUrl: string;
  /** `INTERNAL_AUTH_TOKEN`; the header is omitted when there is none. */
  token?: string;
  /** Per-POST timeout. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5_000;

/** The Gateway answered, but not with a 2xx: not delivered. */
export class SinkRefused extends Error {
  override readonly name = 'SinkRefused';
  constructor(readonly status: number) {
    super(`the Gateway answered ${status}`);
  }
}

export function sinkBodyOf(row: EventRow): SinkBroadcast {
  return { event: row.type as EventName, data: row.payload, targets: { device_ids: row.targets } };
}

export function gatewaySinkDestination(opts: SinkOptions): Destination {
  const url = `${opts.gatewayUrl}${SINK_PATH}`;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const base: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.token !== undefined) base[HttpHeader.internalToken] = opts.token;

  async function post(row: EventRow): Promise<void> {
    const headers: Record<string, string> = { ...base, [HttpHeader.eventId]: broadcastMsgId(row.lobbyId, row.id) };
    if (row.traceparent !== null) headers[Header.traceparent] = row.traceparent;
    const res = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify(sinkBodyOf(row)),
      // A redirect would carry the token elsewhere: treat it as a failure instead.
      redirect: 'error',
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Read the (ignored) body so the connection goes back to the pool.
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw new SinkRefused(res.status);
  }

  return {
    // Lease `relay:gateway-sink`; the URL stays out of it (and out of logs: it may hold credentials).
    name: 'gateway-sink',
    column: 'sink_delivered_at',
    // One at a time per lobby: the relay sends a lobby's next event only after this one's 2xx.
    deliver: post,
  };
}
