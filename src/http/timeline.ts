/**
 * `GET /sessions/{session_id}/timeline` (JSON) and `GET /sessions/{session_id}/timeline.svg`
 * (a sequence chart for a browser): reads for people, answered from the database without a
 * command. Unknown ids are `404 session_not_found`; the shim's token rule applies (auth.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { readRoutes, type SessionTimeline } from '../../subjects/index.js';
import { fail } from '../errors.js';
import { renderSvg } from '../timeline/svg.js';
import type { TimelineStore } from '../timeline/store.js';
import { sendError } from './errors.js';
import { fastifyPath } from './v1.js';

const render: Record<keyof typeof readRoutes, (t: SessionTimeline) => string | SessionTimeline> = {
  sessionTimeline: (t) => t,
  sessionTimelineSvg: renderSvg,
};

export function registerTimelineRoutes(app: FastifyInstance, store: Pick<TimelineStore, 'timeline'>): void {
  for (const id of Object.keys(readRoutes) as Array<keyof typeof readRoutes>) {
    const route = readRoutes[id];
    app.route({
      method: route.method,
      url: fastifyPath(route.path),
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        const sessionId = (req.params as { session_id: string }).session_id;
        const t = await store.timeline(sessionId);
        if (!t) return sendError(reply, fail.sessionNotFound());
        const type = route.contentType === 'image/svg+xml' ? 'image/svg+xml; charset=utf-8' : 'application/json; charset=utf-8';
        return reply.type(type).send(render[id](t));
      },
    });
  }
}
