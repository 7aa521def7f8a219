/**
 * The OpenAPI 3.1 document of the HTTP shim, generated from the contract's zod schemas
 * (`subjects/`), so it cannot drift from what the shim accepts and returns. Served at
 * `GET /openapi.json`. The v1 sink's POST to the Gateway is described as a webhook.
 */
import { z } from 'zod';
import {
  AdminReply,
  EventsReply,
  GatewayHandle,
  Header,
  HealthReply,
  HttpErrorBody,
  HttpHeader,
  LobbyEvents,
  MAX_IDEMPOTENCY_KEY,
  LobbyId,
  Lobby,
  OkReply,
  PresenceReply,
  ProfileReply,
  SERVICE,
  SINK_PATH,
  SessionCreated,
  SessionId,
  SessionStatus,
  SessionTimeline,
  SinkBroadcast,
  StateReply,
  StepIndexReply,
  StepReply,
  V1AssignRole,
  V1CreateLobby,
  V1JoinLobby,
  V1LeaveLobby,
  V1LobbyCreated,
  V1StartLobby,
  commands,
  httpRoutes,
  readRoutes,
  subjectNames,
  type HttpRoute,
  type ReadRoute,
} from '../../subjects/index.js';

const VERSION = '0.1.0';
const SCHEMA_REF = (id: string) => `#/components/schemas/${id}`;

type Json = Record<string, unknown>;

/** `message.event` documented as the closed list of subjects it accepts. */
const GatewayHandleDoc = GatewayHandle.extend({
  message: GatewayHandle.shape.message.extend({
    event: z.enum(subjectNames as [string, ...string[]]),
  }),
});

/** Named request bodies (converted as inputs) and replies (as outputs). */
const requestSchemas = new Map<z.ZodType, string>([
  [V1CreateLobby, 'CreateLobbyRequest'],
  [V1JoinLobby, 'JoinLobbyRequest'],
  [V1LeaveLobby, 'LeaveLobbyRequest'],
  [V1AssignRole, 'AssignRoleRequest'],
  [V1StartLobby, 'StartLobbyRequest'],
  [GatewayHandleDoc, 'GatewayHandleRequest'],
  [SinkBroadcast, 'Broadcast'],
]);
const replySchemas = new Map<z.ZodType, string>([
  [Lobby, 'Lobby'],
  [V1LobbyCreated, 'LobbyCreated'],
  [OkReply, 'Ok'],
  [StateReply, 'StateReply'],
  [AdminReply, 'AdminReply'],
  [StepIndexReply, 'StepIndexReply'],
  [ProfileReply, 'ProfileReply'],
  [PresenceReply, 'PresenceReply'],
  [EventsReply, 'EventsPage'],
  [SessionCreated, 'SessionCreated'],
  [StepReply, 'StepReply'],
  [SessionStatus, 'SessionStatus'],
  [HealthReply, 'Health'],
  [SessionTimeline, 'SessionTimeline'],
  [HttpErrorBody, 'Error'],
]);

function components(named: Map<z.ZodType, string>, io: 'input' | 'output'): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [schema, id] of named) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { target: 'draft-2020-12', io, uri: SCHEMA_REF });
  // Embedded in OpenAPI 3.1 (whose dialect is 2020-12): no per-schema `$schema` / `$id`.
  return Object.fromEntries(
    Object.entries(schemas).map(([id, s]) => {
      const { $schema: _s, $id: _i, ...rest } = s as Json;
      return [id, rest];
    }),
  );
}

/** A request-side schema inline (as an input: a request field may be null for "absent"). */
function inline(schema: z.ZodType): Json {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' }) as Json;
  return rest;
}

const ref = (named: Map<z.ZodType, string>, schema: z.ZodType): Json => {
  const id = named.get(schema);
  if (!id) throw new Error('openapi: schema without a component name');
  return { $ref: SCHEMA_REF(id) };
};

const json = (schema: Json) => ({ content: { 'application/json': { schema } } });

const errors = {
  '4XX': { $ref: '#/components/responses/Error' },
  '5XX': { $ref: '#/components/responses/Error' },
};

function operation(id: string, route: HttpRoute): Json {
  const parameters: Json[] = [];
  if (route.path.includes('{lobby_id}')) {
    parameters.push({ name: 'lobby_id', in: 'path', required: true, schema: inline(LobbyId) });
  }
  if (route.query) {
    // Documented with the command's own ranges (the query string itself carries digits).
    for (const name of ['after_id', 'limit'] as const) {
      parameters.push({ name, in: 'query', required: false, schema: inline(LobbyEvents.shape[name]) });
    }
  }
  parameters.push({ $ref: '#/components/parameters/RequestId' }, { $ref: '#/components/parameters/Traceparent' });
  if (route.method === 'POST') parameters.push({ $ref: '#/components/parameters/IdempotencyKey' });

  let success: Json;
  if (route.subject === null) {
    // The reply of whichever command `message.event` names.
    const replies = [...new Set(subjectNames.map((s) => commands[s].reply as z.ZodType))];
    success = { anyOf: replies.map((r) => ref(replySchemas, r)) };
  } else {
    success = ref(replySchemas, route.reply);
  }
  const op: Json = {
    operationId: id,
    summary: route.summary,
    parameters,
    responses: { '200': { description: 'Success', ...json(success) }, ...errors },
  };
  if (route.body) {
    op.requestBody = {
      required: true,
      ...json(ref(requestSchemas, route.subject === null ? GatewayHandleDoc : route.body)),
    };
  }
  if (route.subject !== null) op['x-command'] = route.subject;
  return op;
}

/** A read route (no command behind it): its path parameter and its one media type. */
function readOperation(id: string, route: ReadRoute): Json {
  const schema = route.reply ? ref(replySchemas, route.reply) : { type: 'string' };
  return {
    operationId: id,
    summary: route.summary,
    parameters: [
      { name: 'session_id', in: 'path', required: true, schema: inline(SessionId) },
      { $ref: '#/components/parameters/RequestId' },
    ],
    responses: {
      '200': { description: 'Success', content: { [route.contentType]: { schema } } },
      ...errors,
    },
  };
}

/** Builds the document (once, at start-up). */
export function openApiDocument(): Json {
  const paths: Record<string, Record<string, Json>> = {
    '/health': {
      get: {
        operationId: 'health',
        summary: 'Liveness and dependencies: 200 when the database and NATS are up, else 503',
        security: [],
        responses: {
          '200': { description: 'Up', ...json(ref(replySchemas, HealthReply)) },
          '503': { description: 'A dependency is down', ...json(ref(replySchemas, HealthReply)) },
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document',
        responses: { '200': { description: 'OpenAPI 3.1 document', ...json({ type: 'object' }) }, ...errors },
      },
    },
    '/asyncapi.json': {
      get: {
        operationId: 'asyncapi',
        summary: 'The AsyncAPI 3.0 document of the NATS interface (commands, replies, errors, broadcasts)',
        responses: { '200': { description: 'AsyncAPI 3.0 document', ...json({ type: 'object' }) }, ...errors },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        summary:
          'Prometheus metrics (text exposition format 0.0.4): requests, latencies, sessions by phase, deadlines, ' +
          'outbox backlog and lag, rate limits, NATS and database pool, and the process (all prefixed `lobby_`)',
        responses: {
          '200': {
            description: 'Prometheus text exposition',
            content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: { type: 'string' } } },
          },
          ...errors,
        },
      },
    },
  };
  for (const [id, route] of Object.entries(httpRoutes) as Array<[string, HttpRoute]>) {
    (paths[route.path] ??= {})[route.method.toLowerCase()] = operation(id, route);
  }
  for (const [id, route] of Object.entries(readRoutes) as Array<[string, ReadRoute]>) {
    (paths[route.path] ??= {})[route.method.toLowerCase()] = readOperation(id, route);
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'Sonalyze Lobby Service: HTTP shim',
      version: VERSION,
      description:
        'The v1-compatible HTTP entry of the lobby service (subjects/README.md, section 6). Every endpoint ' +
        'dispatches into the same handlers as NATS (service `' +
        SERVICE.name +
        '`), so errors, limits and idempotency behave identically. Errors carry the status of ' +
        'the error table and `{"detail", "error": {code, message, details}}`; a routing error ' +
        '(unknown path 404, wrong method 405) has code `invalid_request`. When ' +
        '`HTTP_AUTH_TOKEN` is set, every path but `/health` needs the token.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    security: [{ internalToken: [] }, { bearerToken: [] }],
    paths,
    webhooks: {
      broadcast: {
        post: {
          operationId: 'broadcast',
          summary: `Each broadcast, POSTed to {GATEWAY_URL}${SINK_PATH} in order per lobby, retried until a 2xx`,
          parameters: [
            { name: HttpHeader.internalToken, in: 'header', required: false, schema: { type: 'string' } },
            {
              name: Header.traceparent,
              in: 'header',
              required: false,
              description: 'W3C trace context of the request (or deadline) that caused the broadcast',
              schema: { type: 'string' },
            },
            {
              name: HttpHeader.eventId,
              in: 'header',
              required: true,
              description: '`<lobby_id>:<id>` of the broadcast, for de-duplication',
              schema: { type: 'string' },
            },
          ],
          requestBody: { required: true, ...json(ref(requestSchemas, SinkBroadcast)) },
          responses: { '2XX': { description: 'Delivered; anything else is retried' } },
        },
      },
    },
    components: {
      schemas: { ...components(requestSchemas, 'input'), ...components(replySchemas, 'output') },
      responses: {
        Error: { description: 'Refused or failed', ...json(ref(replySchemas, HttpErrorBody)) },
      },
      parameters: {
        RequestId: {
          name: HttpHeader.requestId,
          in: 'header',
          required: false,
          description: `Correlation id (\`${Header.requestId}\` is accepted too); echoed in the response`,
          schema: { type: 'string' },
        },
        Traceparent: {
          name: Header.traceparent,
          in: 'header',
          required: false,
          description:
            'W3C trace context of the caller; the request runs as its child span, and the broadcasts it causes carry that span',
          schema: { type: 'string' },
        },
        IdempotencyKey: {
          name: Header.idempotencyKey,
          in: 'header',
          required: false,
          description: 'A retry with the same key from the same device returns the first reply',
          schema: { type: 'string', minLength: 1, maxLength: MAX_IDEMPOTENCY_KEY },
        },
      },
      securitySchemes: {
        internalToken: { type: 'apiKey', in: 'header', name: HttpHeader.internalToken },
        bearerToken: { type: 'http', scheme: 'bearer' },
      },
    },
  };
}
