// The audit log queues call records and formats their lines when it writes
// them (qubesd/log/audit.ts): the lines must come out complete, in the order
// the calls ended, with the daemon's own messages in their place, escaped as
// JSON would escape them, and none left behind when the log is closed or
// qubesd stops.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog, type CallRecord } from '../../qubesd/log/audit.js';
import { call, cleanup, startDaemon } from '../helpers/qubesd.js';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function record(method: string, over: Partial<CallRecord> = {}): CallRecord {
  return { source: 'dom0', method, arg: '', dest: 'work', payloadBytes: 0, socket: 'admin', outcome: 'ok', message: undefined, ms: 0.25, ...over };
}

t.test('lines keep their order and bytes, info lines included', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'audit-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.log');
  const log = new AuditLog(file);
  log.call(record('admin.vm.List'));
  log.info('between', { n: 1 });
  log.call(record('admin.vm.feature.Set', { arg: 'a"b\\c', dest: 'wörk', outcome: 'QubesValueError', message: 'bad\nvalue', ms: 3, payloadBytes: 7 }));
  // more than one batch, to cross a write made before the timer's
  for (let i = 0; i < 700; i++) log.call(record('admin.vm.property.Get', { arg: `p${i}` }));
  await log.close();
  const lines = readFileSync(file, 'utf8').split('\n');
  t.equal(lines.pop(), '', 'the file ends with a newline');
  t.equal(lines.length, 703, 'one line per call and per message, none lost on close');
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(
    parsed.every((p) => ISO.test(String(p.t))),
    'every line has an ISO time',
  );
  t.equal(
    lines[0]!.replace(/"t":"[^"]*"/, '"t":"T"'),
    '{"t":"T","ev":"call","source":"dom0","method":"admin.vm.List","arg":"","dest":"work","payloadBytes":0,"socket":"admin","outcome":"ok","ms":0.25}',
    'a call line: its record in its own key order, message left out when undefined',
  );
  t.match(parsed[1], { ev: 'info', msg: 'between', n: 1 }, 'an info line stays where it was logged');
  t.equal(
    lines[2]!.replace(/"t":"[^"]*"/, '"t":"T"'),
    '{"t":"T","ev":"call","source":"dom0","method":"admin.vm.feature.Set","arg":"a\\"b\\\\c","dest":"wörk","payloadBytes":7,"socket":"admin","outcome":"QubesValueError","message":"bad\\nvalue","ms":3}',
    'quotes, backslashes, newlines and non-ASCII escaped as JSON.stringify does',
  );
  t.same(
    parsed.slice(3).map((p) => p.arg),
    Array.from({ length: 700 }, (_, i) => `p${i}`),
    'calls in the order they were logged',
  );
});

t.test('a record is read when its line is written, within the flush window', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'audit-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.log');
  const log = new AuditLog(file);
  t.teardown(() => log.close());
  log.call(record('admin.vm.List'));
  t.equal(readFileSync(file, 'utf8'), '', 'not written at once');
  await new Promise((r) => setTimeout(r, 100));
  t.match(
    readFileSync(file, 'utf8'),
    /^\{"t":"[^"]+","ev":"call","source":"dom0","method":"admin.vm.List",.*\}\n$/,
    'written within the flush window, without closing',
  );
});

t.test('qubesd writes every call line before it exits on SIGTERM', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qubesd-audit-'));
  const logFile = join(dir, 'audit.log');
  const d = await startDaemon({ args: ['--log', logFile] });
  t.teardown(() => {
    cleanup(d);
    rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < 400; i++) await call(d.socket, 'admin.vm.feature.Get', 'work', `f${i}`);
  t.equal(await d.stop('SIGTERM'), 0, 'clean exit');
  const calls = readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.ev === 'call' && l.method === 'admin.vm.feature.Get');
  t.equal(calls.length, 400, 'one line per call');
  t.same(
    calls.map((c) => c.arg),
    Array.from({ length: 400 }, (_, i) => `f${i}`),
    'in the order the calls were made',
  );
  t.ok(
    calls.every((c) => c.outcome === 'QubesFeatureNotFoundError' && typeof c.ms === 'number'),
    'each with its outcome and duration',
  );
});
