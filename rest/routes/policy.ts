// /policies: the qrexec policy files through the policy admin API (policy.List,
// policy.Get, policy.Replace, policy.Remove), for the console's policy editor
// and any client. Each call is first put to the policy daemon exactly as the
// qrexec dispatcher would put it for a call from the identity to dom0
// (AdminCaller.authorize); on allow, the policy admin code that serves these
// services for qrexec (policy/admin.ts, the program behind
// rpc-services/policy-admin.ts) handles it in this process. Replace and
// Remove need the token Get gave (policy.Replace's own rule): a stale one is
// a 409 and nothing is written; a policy that does not load is a 400 with
// the line, and nothing is written.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RestContext } from '../context.js';
import { BASE } from '../context.js';
import { badRequest, conflict, notFound } from '../errors.js';
import { computeToken, PolicyAdmin, PolicyAdminException, PolicyAdminFileNotFoundException, PolicyAdminTokenException } from '../../policy/admin.js';

type NameReq = FastifyRequest<{ Params: { name: string } }>;
const nameParams = { type: 'object', properties: { name: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,255}$' } }, required: ['name'] } as const;
const tags = ['policies'];
const href = (name: string): string => `${BASE}/policies/${name}`;

/** The admin code's message without the policy directory's path; the line number if it names one. */
function describe(e: PolicyAdminException, dir: string, name: string): { message: string; line?: number } {
  const text = e.message
    .split(dir + '/')
    .join('')
    .split(dir)
    .join('');
  const m = new RegExp(`${name.replace(/[.]/g, '\\.')}(?:\\.policy)?:(\\d+):\\s*`).exec(text);
  return { message: text.replace(/^Policy change validation failed: /, '').trim(), ...(m ? { line: Number(m[1]) } : {}) };
}

export async function policyRoutes(app: FastifyInstance, ctx: RestContext): Promise<void> {
  const dir = ctx.options.policy_dir;
  if (!dir) return;
  const admin = new PolicyAdmin(dir);

  async function run(req: FastifyRequest, service: string, name: string, payload: Buffer = Buffer.alloc(0)): Promise<string> {
    await req.caller.authorize(service, 'dom0', name, payload);
    req.caller.calls++;
    try {
      return (admin.handleRequest(service, name, payload) ?? Buffer.alloc(0)).toString('utf8');
    } catch (e) {
      if (e instanceof PolicyAdminFileNotFoundException) throw notFound(`no policy file ${name}`);
      if (e instanceof PolicyAdminTokenException) throw conflict(`${describe(e, dir!, name).message}: the file changed since it was read`, { name });
      if (e instanceof PolicyAdminException) {
        const d = describe(e, dir!, name);
        throw badRequest(d.message, { name, ...(d.line !== undefined ? { line: d.line } : {}) });
      }
      throw e;
    }
  }

  app.get('/policies', { schema: { tags, summary: 'the policy files (policy.List)' } }, async (req) =>
    (await run(req, 'policy.List', '')).split('\n').filter(Boolean).sort(),
  );

  app.get('/policies/:name', { schema: { tags, summary: 'a policy file and its token (policy.Get)', params: nameParams } }, async (req: NameReq) => {
    const reply = await run(req, 'policy.Get', req.params.name);
    const nl = reply.indexOf('\n');
    return { name: req.params.name, token: reply.slice(0, nl), text: reply.slice(nl + 1), href: href(req.params.name) };
  });

  app.put(
    '/policies/:name',
    {
      schema: {
        tags,
        params: nameParams,
        summary: 'replace a policy file (policy.Replace): token is the one GET gave, "new" for a new file, "any" to overwrite regardless',
        body: {
          type: 'object',
          properties: { text: { type: 'string' }, token: { type: 'string', minLength: 1, maxLength: 100 } },
          required: ['text', 'token'],
          additionalProperties: false,
        },
      },
    },
    async (req: FastifyRequest<{ Params: { name: string }; Body: { text: string; token: string } }>) => {
      const { text, token } = req.body;
      if (token.includes('\n')) throw badRequest('token must be one line', { field: 'token' });
      await run(req, 'policy.Replace', req.params.name, Buffer.from(`${token}\n${text}`, 'utf8'));
      return { name: req.params.name, token: computeToken(Buffer.from(text, 'utf8')), href: href(req.params.name) };
    },
  );

  app.delete(
    '/policies/:name',
    {
      schema: {
        tags,
        params: nameParams,
        summary: 'remove a policy file (policy.Remove); ?token= as for PUT',
        querystring: { type: 'object', properties: { token: { type: 'string' } }, required: ['token'] },
      },
    },
    async (req: FastifyRequest<{ Params: { name: string }; Querystring: { token: string } }>, reply) => {
      await run(req, 'policy.Remove', req.params.name, Buffer.from(req.query.token, 'utf8'));
      return reply.code(204).send();
    },
  );
}
