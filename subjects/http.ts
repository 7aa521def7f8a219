/**
 * The HTTP shim's part of the contract (CONTRACT section 6) and the v1 broadcast sink
 * (section 5, "Optional v1 sink"): the v1 request bodies and reply shapes, the routes and the
 * command each one dispatches, the HTTP error body and header names.
 *
 * The shim validates only these v1 envelopes; everything inside them (the command data, the
 * acting device, limits, idempotency) goes through the same dispatcher as NATS, so the rules
 * of `commands` apply unchanged. The OpenAPI document is generated from this table.
 */
import { z } from 'zod';
import {
  EventsReply,
  LobbyCreate,
  LobbyJoin,
  OkReply,
  RoleAssign,
  StateReply,
  type Subject,
} from './commands.js';
import { ErrorBody } from './errors.js';
import { eventNames, type EventName } from './events.js';
import { DeviceId, Lobby, optional } from './objects.js';
import { SessionTimeline } from './timeline.js';

/** HTTP header names of the shim and the sink (the NATS ones are in `Header`). */
export const HttpHeader = {
  /**
   * Inbound: `HTTP_AUTH_TOKEN`, when set (`Authorization: Bearer <token>` works as well).
   * Outbound: the sink sends `INTERNAL_AUTH_TOKEN` to the Gateway under this name, as v1 did.
   */
  internalToken: 'X-Internal-Token',
  authorization: 'Authorization',
  /** Correlation id; `Request-Id` is accepted too. Echoed in the response under both names. */
  requestId: 'X-Request-Id',
  /**
   * Sent with each sink POST: `<lobby_id>:<id>` of the broadcast (like `Nats-Msg-Id`), so a
   * Gateway can drop the rare re-delivery after a crash between its 2xx and our bookkeeping.
   */
  eventId: 'X-Event-Id',
} as const;

/**
 * `Device-Id` of the shim's own reads (`GET /lobbies/{id}`, `GET /lobbies/{id}/events`), which
 * carry no device. They share one rate-limit bucket.
 */
export const HTTP_SHIM_DEVICE_ID = 'http-shim';

// ---- v1 request bodies ----------------------------------------------------------------------

export const V1CreateLobby = z.object({
  /** The creating device; it becomes the admin. */
  creator_device_id: DeviceId,
  max_participants: LobbyCreate.shape.max_participants,
});
export const V1JoinLobby = z.object({ code: LobbyJoin.shape.code, device_id: DeviceId });
export const V1LeaveLobby = z.object({ device_id: DeviceId });
/** `role.assign` without `lobby_id` (it is in the path), sent as `admin_device_id`. */
export const V1AssignRole = RoleAssign.omit({ lobby_id: true }).extend({ admin_device_id: DeviceId });
export const V1StartLobby = z.object({ admin_device_id: DeviceId });

/** A query-string integer: digits only (ranges are checked by the command's own schema). */
const QueryInt = z
  .string()
  .regex(/^\d{1,15}$/, 'must be a whole number')
  .transform(Number);
/** `GET /lobbies/{lobby_id}/events?after_id=&limit=` (unknown parameters are ignored). */
export const V1EventsQuery = z.object({ after_id: QueryInt.optional(), limit: QueryInt.optional() });

/** `POST /gateway/handle`: a client event forwarded by the v1 Gateway. */
export const GatewayHandle = z.object({
  client: z.object({
    /** The acting device (the NATS `Device-Id`). */
    device_id: DeviceId,
    /** The Gateway's socket id, for logs (the NATS `Connection-Id`). */
    connection_id: z.string().max(256),
    ip: optional(z.string().max(64)),
  }),
  message: z.object({
    /** A command subject of CONTRACT section 3 (aliases included). */
    event: z.string().min(1).max(128),
    /** Correlation id (the NATS `Request-Id`); takes precedence over the header. */
    request_id: optional(z.string().max(128)),
    /** The command's data; absent means `{}`. */
    data: optional(z.record(z.string(), z.unknown())),
  }),
});
export type GatewayHandle = z.infer<typeof GatewayHandle>;

// ---- v1 replies -----------------------------------------------------------------------------

/** `POST /lobbies` replies with a summary, as v1 did (not the whole Lobby). */
export const V1LobbyCreated = Lobby.pick({ lobby_id: true, code: true, admin_device_id: true, state: true });

/** `GET /health`: 200 when the database and NATS are both up, else 503. */
export const HealthReply = z.strictObject({
  service: z.string(),
  ok: z.boolean(),
  checks: z.strictObject({ database: z.boolean(), nats: z.boolean() }),
});
export type HealthReply = z.infer<typeof HealthReply>;

/** Every HTTP error: the NATS error body plus FastAPI's `detail` (the message), for v1 clients. */
export const HttpErrorBody = ErrorBody.extend({ detail: z.string() });
export type HttpErrorBody = z.infer<typeof HttpErrorBody>;

// ---- routes ---------------------------------------------------------------------------------

export interface HttpRoute {
  method: 'GET' | 'POST';
  /** OpenAPI-style path (`{lobby_id}`). */
  path: string;
  /** The command it dispatches; `null` for `/gateway/handle` (the command named in the body). */
  subject: Subject | null;
  body?: z.ZodType;
  query?: z.ZodType;
  reply: z.ZodType;
  summary: string;
}

/** Every v1 endpoint besides `/health` and `/openapi.json`, keyed by OpenAPI operation id. */
export const httpRoutes = {
  createLobby: {
    method: 'POST',
    path: '/lobbies',
    subject: 'lobby.create',
    body: V1CreateLobby,
    reply: V1LobbyCreated,
    summary: 'Create a lobby as `creator_device_id` (lobby.create)',
  },
  joinLobby: {
    method: 'POST',
    path: '/lobbies/join',
    subject: 'lobby.join',
    body: V1JoinLobby,
    reply: Lobby,
    summary: 'Join an open lobby by its code as `device_id` (lobby.join)',
  },
  leaveLobby: {
    method: 'POST',
    path: '/lobbies/{lobby_id}/leave',
    subject: 'lobby.leave',
    body: V1LeaveLobby,
    reply: OkReply,
    summary: 'Leave a lobby as `device_id` (lobby.leave)',
  },
  getLobby: {
    method: 'GET',
    path: '/lobbies/{lobby_id}',
    subject: 'lobby.get',
    reply: Lobby,
    summary: 'Read a lobby (lobby.get)',
  },
  assignRole: {
    method: 'POST',
    path: '/lobbies/{lobby_id}/roles',
    subject: 'role.assign',
    body: V1AssignRole,
    reply: OkReply,
    summary: 'Give a participant a role and slot, as `admin_device_id` (role.assign)',
  },
  startLobby: {
    method: 'POST',
    path: '/lobbies/{lobby_id}/start',
    subject: 'lobby.start',
    body: V1StartLobby,
    reply: StateReply,
    summary: 'Mark the lobby as measuring, as `admin_device_id` (lobby.start)',
  },
  lobbyEvents: {
    method: 'GET',
    path: '/lobbies/{lobby_id}/events',
    subject: 'lobby.events',
    query: V1EventsQuery,
    reply: EventsReply,
    summary: 'Page through the event log, without the member check (lobby.events)',
  },
  gatewayHandle: {
    method: 'POST',
    path: '/gateway/handle',
    subject: null,
    body: GatewayHandle,
    reply: z.record(z.string(), z.unknown()),
    summary: 'Run the command named by `message.event` as `client.device_id`; replies with its reply',
  },
} as const satisfies Record<string, HttpRoute>;
export type HttpRouteId = keyof typeof httpRoutes;

// ---- operator reads -------------------------------------------------------------------------

/** A read for people and tools that runs no command: answered from the database directly. */
export interface ReadRoute {
  method: 'GET';
  /** OpenAPI-style path (`{session_id}`). */
  path: string;
  /** Media type of the 200 reply. */
  contentType: 'application/json' | 'image/svg+xml';
  /** Schema of a JSON reply. */
  reply?: z.ZodType;
  summary: string;
}

/**
 * The session timeline (subjects/timeline.ts), as JSON and as an SVG sequence chart. Unknown
 * session ids answer `404 session_not_found`; `HTTP_AUTH_TOKEN` guards them like every path
 * but `/health`.
 */
export const readRoutes = {
  sessionTimeline: {
    method: 'GET',
    path: '/sessions/{session_id}/timeline',
    contentType: 'application/json',
    reply: SessionTimeline,
    summary: "A session's steps and broadcasts in order, with millisecond offsets, phases and marks for deadlines and errors",
  },
  sessionTimelineSvg: {
    method: 'GET',
    path: '/sessions/{session_id}/timeline.svg',
    contentType: 'image/svg+xml',
    summary: 'The same timeline as an SVG sequence chart (one lane per device) for a browser',
  },
} as const satisfies Record<string, ReadRoute>;
export type ReadRouteId = keyof typeof readRoutes;

// ---- the v1 sink ----------------------------------------------------------------------------

/** Path on `GATEWAY_URL` that receives every broadcast. */
export const SINK_PATH = '/internal/broadcast';

/** Body POSTed to `{GATEWAY_URL}/internal/broadcast` for each broadcast. */
export const SinkBroadcast = z.strictObject({
  event: z.enum(eventNames as [EventName, ...EventName[]]),
  data: z.record(z.string(), z.unknown()),
  targets: z.strictObject({ device_ids: z.array(z.string()) }),
});
export type SinkBroadcast = z.infer<typeof SinkBroadcast>;
