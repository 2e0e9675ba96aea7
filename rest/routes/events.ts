// /events: qubesd's admin.Events as Server-Sent Events, one JSON object
// {"subject", "event", "kwargs"} per message, filtered by qubesd for the
// token's identity. A client that does not read is dropped once more than
// events_buffer bytes wait for it, so it cannot make the gateway hold an
// unbounded queue.
import type { FastifyInstance } from 'fastify';
import type { RestContext } from '../context.js';
import { eventStreamHeaders } from '../transport-headers.js';
import { answerHead, isHead } from '../head-only.js';

export async function eventRoutes(app: FastifyInstance, ctx: RestContext): Promise<void> {
  app.get(
    '/events',
    {
      schema: { tags: ['events'], summary: 'admin.Events as Server-Sent Events (text/event-stream)', produces: ['text/event-stream'] },
    },
    async (req, reply) => {
      const head = eventStreamHeaders(ctx.options);
      if (isHead(reply)) {
        // what GET asks the policy, without subscribing
        await req.caller.authorize('admin.Events', 'dom0');
        return answerHead(reply, head);
      }
      const res = reply.raw;
      let seq = 0;
      let dropped = false;
      const limit = ctx.options.events_buffer;
      // authorize (and connect) before the 200 goes out: a refusal is a JSON 403
      let opened = false;
      const pending: string[] = [];
      const send = (chunk: string): void => {
        if (dropped) return;
        if (!opened) {
          pending.push(chunk);
          return;
        }
        res.write(chunk);
        if (res.writableLength > limit) {
          dropped = true;
          stream.close();
          res.destroy();
        }
      };
      const stream = await req.caller.events((e) => {
        send(`id: ${++seq}\ndata: ${JSON.stringify({ subject: e.subject, event: e.event, kwargs: Object.fromEntries(e.kwargs) })}\n\n`);
      });
      reply.hijack();
      res.writeHead(200, head);
      opened = true;
      for (const c of pending.splice(0)) send(c);
      const keepalive = setInterval(() => send(': keepalive\n\n'), 30_000);
      const end = (): void => {
        clearInterval(keepalive);
        stream.close();
        if (!res.destroyed) res.end();
      };
      res.once('close', end);
      stream.finished.then(end, end);
      return reply;
    },
  );
}
