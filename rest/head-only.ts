// HEAD on the routes that stream. fastify answers HEAD with the GET route's
// handler and Node drops the body; but Node sends a HEAD response's headers
// only when it ends, so an endless stream (Server-Sent Events, a task being
// watched) never answered at all while it held a qubesd connection, and a
// finite one (a disk or backup export) was made in full, as a task, to be
// thrown away. These routes check what GET checks (identity, policy, the
// object), then answer with the headers alone.
import type { FastifyReply } from 'fastify';

export const isHead = (reply: FastifyReply): boolean => reply.request.method === 'HEAD';

/** The response to a HEAD: status 200 with `headers`, no body. */
export function answerHead(reply: FastifyReply, headers: Record<string, string>): FastifyReply {
  reply.hijack();
  reply.raw.writeHead(200, headers);
  reply.raw.end();
  return reply;
}
