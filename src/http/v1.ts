/**
 * The v1 REST endpoints (CONTRACT section 6). Each one only translates: v1 body -> acting
 * device + command data, dispatch through the same `Dispatcher` as NATS, command reply -> v1
 * reply. Every rule (schemas of the command, limits, idempotency, errors) is the dispatcher's.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import {
  HTTP_SHIM_DEVICE_ID,
  httpRoutes,
  type HttpRouteId,
  type Lobby,
  type Subject,
  type V1AssignRole,
  type V1CreateLobby,
  type V1EventsQuery,
  type V1JoinLobby,
  type V1LeaveLobby,
  type V1StartLobby,
} from '../../subjects/index.js';
import type { Dispatcher } from '../transport/dispatch.js';
import { sendError } from './errors.js';
import { idempotencyKeyOf, parseWith, requestIdOf, traceparentOf } from './inbound.js';

/** What a v1 request means on the command side. */
interface Command {
  deviceId: string;
  data: Record<string, unknown>;
  /**
   * A read by the shim itself, not by a device: no member check (`lobby.events`) and no
   * per-device rate limit (every such read shares the shim's device id).
   */
  trusted?: boolean;
}

interface Input<B, Q> {
  body: B;
  query: Q;
  lobbyId: string;
}

interface Mapping<B = unknown, Q = unknown> {
  command(input: Input<B, Q>): Command;
  /** v1 reply from the command's reply; default: the command's reply as is. */
  reply?(reply: unknown): unknown;
}

type Out<S extends z.ZodType> = z.output<S>;
type V1RouteId = Exclude<HttpRouteId, 'gatewayHandle'>;

const mappings: { [K in V1RouteId]: Mapping<any, any> } = {
  createLobby: {
    command: ({ body }: Input<Out<typeof V1CreateLobby>, never>) => ({
      deviceId: body.creator_device_id,
      data: { max_participants: body.max_participants },
    }),
    reply: (r) => {
      const { lobby_id, code, admin_device_id, state } = r as Lobby;
      return { lobby_id, code, admin_device_id, state };
    },
  },
  joinLobby: {
    command: ({ body }: Input<Out<typeof V1JoinLobby>, never>) => ({ deviceId: body.device_id, data: { code: body.code } }),
  },
  leaveLobby: {
    command: ({ body, lobbyId }: Input<Out<typeof V1LeaveLobby>, never>) => ({
      deviceId: body.device_id,
      data: { lobby_id: lobbyId },
    }),
  },
  getLobby: {
    command: ({ lobbyId }) => ({ deviceId: HTTP_SHIM_DEVICE_ID, data: { lobby_id: lobbyId }, trusted: true }),
  },
  assignRole: {
    command: ({ body, lobbyId }: Input<Out<typeof V1AssignRole>, never>) => {
      const { admin_device_id, ...rest } = body;
      return { deviceId: admin_device_id, data: { lobby_id: lobbyId, ...rest } };
    },
  },
  startLobby: {
    command: ({ body, lobbyId }: Input<Out<typeof V1StartLobby>, never>) => ({
      deviceId: body.admin_device_id,
      data: { lobby_id: lobbyId },
    }),
  },
  lobbyEvents: {
    command: ({ query, lobbyId }: Input<never, Out<typeof V1EventsQuery>>) => ({
      deviceId: HTTP_SHIM_DEVICE_ID,
      data: { lobby_id: lobbyId, after_id: query.after_id, limit: query.limit },
      trusted: true,
    }),
  },
};

/** `/lobbies/{lobby_id}` -> `/lobbies/:lobby_id` (Fastify's syntax). */
export function fastifyPath(path: string): string {
  return path.replace(/\{(\w+)\}/g, ':$1');
}

export function registerV1Routes(app: FastifyInstance, dispatcher: Dispatcher): void {
  for (const id of Object.keys(mappings) as V1RouteId[]) {
    const route = httpRoutes[id];
    const mapping = mappings[id];
    const subject: Subject = route.subject;
    app.route({
      method: route.method,
      url: fastifyPath(route.path),
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        const requestId = requestIdOf(req);
        const cmd = mapping.command({
          body: 'body' in route ? parseWith(route.body, req.body) : undefined,
          query: 'query' in route ? parseWith(route.query, req.query) : undefined,
          lobbyId: (req.params as { lobby_id?: string }).lobby_id ?? '',
        });
        const outcome = await dispatcher.dispatch({
          subject,
          // Undefined optionals vanish here, exactly as if a NATS client had omitted them.
          body: JSON.stringify(cmd.data),
          deviceId: cmd.deviceId,
          requestId,
          idempotencyKey: idempotencyKeyOf(req),
          traceparent: traceparentOf(req),
          trusted: cmd.trusted,
        });
        if (!outcome.ok) return sendError(reply, outcome.error);
        return reply.send(mapping.reply ? mapping.reply(outcome.reply) : outcome.reply);
      },
    });
  }
}
