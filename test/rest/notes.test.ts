// GET and PUT /vms/{id}/notes over real HTTP against the real stack: the
// notes as text/plain both ways (admin.vm.notes.Get/Set), a refusal by the
// policy (403 naming the call), and bodies the gateway refuses itself (too
// large for one Admin API request, not UTF-8, not text/plain) with nothing
// changed.
import t from 'tap';
import SwaggerParser from '@apidevtools/swagger-parser';
import { connect } from 'node:net';
import { createToken, http, startRestStack, type RestStack } from './helpers.js';

const grant = (service: string, target: string) => `${service} * mgmt ${target} allow target=dom0`;
const s: RestStack = await startRestStack({
  '30-notes.policy': [grant('admin.vm.notes.Get', 'work'), grant('admin.vm.List', 'work'), ''].join('\n'),
});
t.teardown(() => s.stop());
const { url, token } = s;

await s.dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=mgmt label=red');
const workUuid = /uuid=(\S+)/.exec((await s.dom0('admin.vm.List', 'work')).content)![1]!;
const notesOf = async (vm: string) => (await s.dom0('admin.vm.notes.Get', vm)).content;
const putText = (path: string, body: string | Uint8Array, tok: string | null = token, type = 'text/plain; charset=utf-8') =>
  fetch(url + path, { method: 'PUT', headers: { 'content-type': type, ...(tok ? { authorization: `Bearer ${tok}` } : {}) }, body });

/**
 * PUT of `total` bytes of text over a plain socket: 100 000 bytes, a pause
 * of 300 ms, the rest. What came back, and how the last write ended.
 */
function slowPut(target: string, total: number): Promise<{ status: number; body: string; writeError: string | null }> {
  const u = new URL(target);
  return new Promise((resolve) => {
    const sock = connect({ host: u.hostname, port: Number(u.port), allowHalfOpen: true });
    let raw = '';
    let writeError: string | null = 'not written';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (raw += d));
    sock.on('error', () => {});
    sock.on('close', () => {
      const [head = '', body = ''] = raw.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0), body, writeError });
    });
    sock.write(
      `PUT ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: text/plain\r\nContent-Length: ${total}\r\nConnection: close\r\n\r\n`,
    );
    sock.write('s'.repeat(100_000));
    setTimeout(() => {
      sock.write('s'.repeat(total - 100_000), (e) => {
        writeError = e ? ((e as NodeJS.ErrnoException).code ?? e.message) : null;
        if (!e) sock.end();
      });
    }, 300);
  });
}

t.test('get and put the notes as text', async (t) => {
  const empty = await http(`${url}/vms/work/notes`, 'GET', token);
  t.equal(empty.status, 200);
  t.equal(empty.headers.get('content-type'), 'text/plain; charset=utf-8');
  t.equal(empty.text, '', 'no notes yet');

  const put = await putText('/vms/work/notes', 'first line\nsecond: été <b>\n');
  t.equal(put.status, 204);
  t.equal(await notesOf('work'), 'first line\nsecond: été <b>\n', 'qubesd has them');
  const got = await http(`${url}/vms/${workUuid}/notes`, 'GET', token);
  t.equal(got.text, 'first line\nsecond: été <b>\n', 'read back by uuid');

  t.equal((await putText(`/vms/${workUuid}/notes`, 'bell\u0007\ttab\n')).status, 204);
  t.equal(await notesOf('work'), 'bell_\ttab\n', 'a control character becomes _, as in Qubes');

  // the method table says admin.vm.notes.Set needs a payload: qubesd refuses empty notes, the gateway passes that on
  const empty2 = await putText('/vms/work/notes', '');
  t.equal(empty2.status, 400);
  t.same(await empty2.json(), { error: 'ProtocolError', message: 'expected payload', call: 'admin.vm.notes.Set work' });
  t.equal(await notesOf('work'), 'bell_\ttab\n', 'unchanged');
});

t.test('bodies refused by the gateway change nothing', async (t) => {
  t.equal((await putText('/vms/work/notes', 'kept\n')).status, 204);

  // the header of admin.vm.notes.Set as dom0 to the longest destination (uuid:...) is 72 bytes of qubesd's 65536
  const fits = await putText('/vms/work/notes', 'x'.repeat(65464));
  t.equal(fits.status, 204, 'the largest notes one request carries');
  t.equal((await notesOf('work')).length, 65464);
  t.equal((await putText('/vms/work/notes', 'kept\n')).status, 204);

  const big = await putText('/vms/work/notes', 'y'.repeat(65465));
  t.equal(big.status, 400);
  t.same(await big.json(), { error: 'bad request', message: 'notes are at most 65464 bytes (65465 given)' });
  t.equal(await notesOf('work'), 'kept\n', 'unchanged');
  const huge = await putText('/vms/work/notes', 'z'.repeat(2 << 20));
  t.equal(huge.status, 400, "past the gateway's general body limit too");
  t.same(await huge.json(), { error: 'bad request', message: 'notes are at most 65464 bytes (2097152 given)' });
  t.equal(await notesOf('work'), 'kept\n', 'unchanged');

  // a client still sending when the limit is passed: the answer waits for
  // the rest of the body (read and dropped), else the client's next write
  // meets a closed connection (EPIPE) and it never sees the answer
  const slow = await slowPut(`${url}/vms/work/notes`, 1 << 20);
  t.equal(slow.status, 400, 'a slow sender sees the answer');
  t.equal(slow.writeError, null, 'every byte of the body was taken');
  t.same(JSON.parse(slow.body), { error: 'bad request', message: 'notes are at most 65464 bytes (1048576 given)' });
  t.equal(await notesOf('work'), 'kept\n', 'unchanged');

  const bad = await putText('/vms/work/notes', Uint8Array.from([0x6f, 0x6b, 0xff, 0x0a]));
  t.equal(bad.status, 400);
  t.same(await bad.json(), { error: 'bad request', message: 'the notes are not valid UTF-8 text' });
  t.equal(await notesOf('work'), 'kept\n', 'unchanged');

  const json = await putText('/vms/work/notes', JSON.stringify({ notes: 'x' }), token, 'application/json');
  t.equal(json.status, 400);
  t.same(await json.json(), { error: 'bad request', message: 'send the notes as text/plain' });
  t.equal(await notesOf('work'), 'kept\n', 'unchanged');

  const dom0 = await http(`${url}/vms/dom0/notes`, 'GET', token);
  t.equal(dom0.status, 400, 'dom0 has no notes: qubesd says so');
  t.same(dom0.json, { error: 'ProtocolError', message: 'expected destination to not be AdminVM', call: 'admin.vm.notes.Get dom0' });
});

t.test('the policy decides, as for every route', async (t) => {
  await s.dom0('admin.vm.notes.Set', 'work', '', 'by dom0\n');
  const mgmt = createToken(s.prefix, 'mgmt');
  const got = await http(`${url}/vms/work/notes`, 'GET', mgmt);
  t.equal(got.status, 200);
  t.equal(got.text, 'by dom0\n', 'allowed to read');
  const put = await putText('/vms/work/notes', 'by mgmt\n', mgmt);
  t.equal(put.status, 403);
  t.same(await put.json(), {
    error: 'forbidden',
    message: 'the policy does not let mgmt call admin.vm.notes.Set+ on work',
    call: { service: 'admin.vm.notes.Set+', target: 'work' },
  });
  t.equal(await notesOf('work'), 'by dom0\n', 'unchanged');
  t.equal((await http(`${url}/vms/tpl/notes`, 'GET', mgmt)).status, 403, 'no rule for tpl');
  t.equal((await http(`${url}/vms/work/notes`, 'GET', null)).status, 401, 'no token');
});

t.test('the OpenAPI document has them', async (t) => {
  const doc = await http(`${url}/docs/openapi.json`, 'GET', null);
  const path = (doc.json as { paths: Record<string, Record<string, { requestBody?: { content: Record<string, unknown> } }>> }).paths['/rest/v0/vms/{id}/notes'];
  t.same(Object.keys(path ?? {}).sort(), ['get', 'put']);
  t.same(Object.keys(path!.put!.requestBody!.content), ['text/plain']);
  await t.resolves(SwaggerParser.validate(JSON.parse(doc.text)), 'still valid OpenAPI 3');
});
