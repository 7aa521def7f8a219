/**
 * `POST /gateway/handle` (CONTRACT section 6): the v1 Gateway forwards a client's event as
 * `{client: {device_id, connection_id, ip?}, message: {event, request_id?, data}}`. It is
 * dispatched as that device, exactly as the same request on NATS subject `message.event`
 * with `Device-Id: client.device_id`; the reply is the command's reply.
 */
import type { FastifyInstance } from 'fastify';
import { GatewayHandle, httpRoutes } from '../../subjects/index.js';
import { fail } from '../errors.js';
import type { Dispatcher } from '../transport/dispatch.js';
import { sendError } from './errors.js';
import { echoRequestId, idempotencyKeyOf, parseWith, requestIdOf, traceparentOf } from './inbound.js';

export function registerGatewayRoute(app: FastifyInstance, dispatcher: Dispatcher): void {
  const route = httpRoutes.gatewayHandle;
  app.route({
    method: route.method,
    url: route.path,
    handler: async (req, reply) => {
      const { client, message } = parseWith(GatewayHandle, req.body);
      // The body's request id is the Gateway's correlation id for this client message.
      const requestId = message.request_id ?? requestIdOf(req);
      echoRequestId(reply, requestId);
      if (!dispatcher.serves(message.event)) {
        throw fail.invalid(`unknown event "${message.event}"`, [
          { path: 'message.event', message: 'not a command subject of this service' },
        ]);
      }
      const outcome = await dispatcher.dispatch({
        subject: message.event,
        body: JSON.stringify(message.data ?? {}),
        deviceId: client.device_id,
        connectionId: client.connection_id,
        requestId,
        idempotencyKey: idempotencyKeyOf(req),
        traceparent: traceparentOf(req),
      });
      if (!outcome.ok) return sendError(reply, outcome.error);
      return reply.send(outcome.reply);
    },
  });
}
