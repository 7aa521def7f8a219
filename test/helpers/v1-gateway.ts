/**
 * A small fake of the v1 Gateway (Valentin-Lill/sonalyze_backend, gateway/), as a phone
 * transport: phones' messages go to `POST {lobby}/gateway/handle` as `{client, message}` with NO
 * token and `request_id` as the app sent it; any status >= 400 becomes the Gateway's
 * `upstream_error`. Broadcasts come back through the v1 sink: `POST /internal/broadcast`
 * `{event, data, targets: {device_ids}}`, refused 403 unless `X-Internal-Token` is the shared
 * `INTERNAL_AUTH_TOKEN` (500 when the Gateway has none), then relayed to the targets' sockets.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpHeader, SINK_PATH, type EventName, type Subject } from '../../subjects/index.js';
import type { PhoneTransport, PushHandler, RequestResult } from '../../src/sim/transport.js';

export class FakeV1Gateway implements PhoneTransport {
  /** Sink POSTs accepted / refused (wrong or missing token). */
  accepted = 0;
  refused = 0;
  /** Every `/gateway/handle` response status, in order. */
  readonly statuses: number[] = [];
  private readonly phones = new Map<string, PushHandler>();
  private lobbyUrl = '';
  private connection = 0;

  private constructor(
    private readonly server: Server,
    /** The Gateway's INTERNAL_AUTH_TOKEN. */
    private readonly token: string,
  ) {}

  static async start(token: string): Promise<FakeV1Gateway> {
    let gw!: FakeV1Gateway;
    const server = createServer((req, res) => {
      void gw.onSink(req).then(
        ({ status, body }) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)),
        () => res.writeHead(500).end(),
      );
    });
    gw = new FakeV1Gateway(server, token);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return gw;
  }

  /** `GATEWAY_URL` for the service. */
  get url(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** Where `/gateway/handle` is (the service's HTTP address, known once it runs). */
  connectTo(lobbyUrl: string): void {
    this.lobbyUrl = lobbyUrl;
  }

  private async onSink(req: IncomingMessage): Promise<{ status: number; body: unknown }> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method !== 'POST' || req.url !== SINK_PATH) return { status: 404, body: { detail: 'Not Found' } };
    if (!this.token) return { status: 500, body: { detail: 'INTERNAL_AUTH_TOKEN not configured' } };
    if (req.headers[HttpHeader.internalToken.toLowerCase()] !== this.token) {
      this.refused++;
      return { status: 403, body: { detail: 'Forbidden' } };
    }
    this.accepted++;
    const payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      event: EventName;
      data: Record<string, unknown>;
      targets: { device_ids: string[] };
    };
    let sent = 0;
    for (const id of payload.targets.device_ids) {
      const phone = this.phones.get(id);
      if (!phone) continue;
      sent++;
      // As the socket would: after the POST is answered, never inside it.
      setImmediate(() => phone(payload.event, payload.data));
    }
    return { status: 200, body: { sent } };
  }

  async request(deviceId: string, subject: Subject, data: Record<string, unknown>): Promise<RequestResult> {
    const body = {
      client: { device_id: deviceId, connection_id: `conn-${++this.connection}`, ip: null },
      // The app sends a decimal microsecond id; the Gateway forwards null when there is none.
      message: { event: subject, request_id: String(BigInt(Date.now()) * 1000n), data },
    };
    let res: Response;
    try {
      res = await fetch(`${this.lobbyUrl}/gateway/handle`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    } catch (err) {
      return { ok: false, status: 0, error: { code: 'upstream_unreachable', message: String(err) } };
    }
    this.statuses.push(res.status);
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status >= 400) {
      // What the app would see: the Gateway's wrapping, with the service's detail inside.
      const detail = typeof json.detail === 'string' ? json.detail : JSON.stringify(json);
      const inner = (json.error as { code?: string } | undefined)?.code ?? 'unknown';
      return { ok: false, status: res.status, error: { code: inner, message: `Upstream error (${res.status}): ${detail}` } };
    }
    return { ok: true, data: json };
  }

  attach(deviceId: string, handler: PushHandler): () => void {
    this.phones.set(deviceId, handler);
    return () => {
      if (this.phones.get(deviceId) === handler) this.phones.delete(deviceId);
    };
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
