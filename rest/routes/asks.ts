// /asks: the questions of `ask` policy rules (rest/ask-agent.ts), for dom0
// console sessions only: GET /asks is an SSE stream of questions (and of
// their end, {"id", "done": true}); POST /asks/{id} {allow, target} answers.
// Any other identity gets 403: only dom0's user confirms calls, as in Qubes.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AskAgent } from '../ask-agent.js';
import type { RestContext } from '../context.js';
import { badRequest, notFound, RestError } from '../errors.js';
import { eventStreamHeaders } from '../transport-headers.js';
import { answerHead, isHead } from '../head-only.js';

const onlyDom0 = (req: FastifyRequest): void => {
  if (req.token.identity !== 'dom0') throw new RestError(403, 'forbidden', 'only a dom0 session answers policy questions');
};

export function askRoutes(agent: AskAgent | null): (app: FastifyInstance, ctx: RestContext) => Promise<void> {
  return async (app, ctx) => {
    app.get('/asks', { schema: { tags: ['asks'], summary: 'questions of `ask` policy rules, as Server-Sent Events (dom0 only)' } }, async (req, reply) => {
      onlyDom0(req);
      if (!agent) throw new RestError(503, 'unavailable', 'the ask agent is not running');
      const head = eventStreamHeaders(ctx.options);
      if (isHead(reply)) return answerHead(reply, head);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, head);
      // out now: with no question pending nothing else is written for a while,
      // and Node holds the headers back until something is
      res.flushHeaders();
      const send = (o: unknown): void => {
        res.write(`data: ${JSON.stringify(o)}\n\n`);
      };
      for (const q of agent.questions()) send(q);
      const stop = agent.subscribe(send);
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), 30_000);
      res.once('close', () => {
        clearInterval(keepalive);
        stop();
      });
      return reply;
    });
    app.post(
      '/asks/:id',
      {
        schema: {
          tags: ['asks'],
          summary: 'answer a question: {"allow": true, "target": T} or {"allow": false}',
          params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9a-f]{1,64}$' } }, required: ['id'] },
          body: {
            type: 'object',
            properties: { allow: { type: 'boolean' }, target: { type: 'string', maxLength: 64 } },
            required: ['allow'],
            additionalProperties: false,
          },
        },
      },
      async (req: FastifyRequest<{ Params: { id: string }; Body: { allow: boolean; target?: string } }>, reply) => {
        onlyDom0(req);
        if (!agent) throw notFound('no such question');
        const r = agent.answer(req.params.id, req.body.allow, req.body.target);
        if (r === 'gone') throw notFound('no such question (answered, or it timed out)');
        if (r === 'bad target') throw badRequest('that target is not one the policy allows', { field: 'target' });
        return reply.code(204).send();
      },
    );
  };
}
