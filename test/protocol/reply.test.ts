import t from 'tap';
import { OkReply, eventFrame, exceptionFrame, okFrame, parseReply } from '../../lib/protocol/reply.js';
import { pyRepr } from '../../qubesd/errors.js';

t.test('OK frame', async (t) => {
  t.same([...okFrame('')], [0x30, 0]);
  t.same([...okFrame(null)], [0x30, 0]);
  t.equal(okFrame('héllo').subarray(2).toString('utf8'), 'héllo');
  t.equal(parseReply(okFrame('x\ny')).content!.toString(), 'x\ny');
});

t.test('EXCEPTION frame: type NUL traceback NUL message NUL', async (t) => {
  const f = exceptionFrame('QubesVMNotFoundError', "No such domain: 'x'");
  t.equal(f.toString('latin1'), "2\0QubesVMNotFoundError\0\0No such domain: 'x'\0");
  t.same(parseReply(f), { kind: 'exception', type: 'QubesVMNotFoundError', message: "No such domain: 'x'" });
});

t.test('EVENT frame keeps kwargs order and ends with an empty field', async (t) => {
  const f = eventFrame('work', 'domain-feature-set:f', [
    ['feature', 'f'],
    ['value', '1'],
  ]);
  t.equal(f.toString('latin1'), '1\x00work\x00domain-feature-set:f\x00feature\x00f\x00value\x001\x00\x00');
  t.equal(eventFrame('', 'connection-established').toString('latin1'), '1\0\0connection-established\0\0');
});

t.test('pyRepr quotes like Python repr()', async (t) => {
  t.equal(pyRepr('work'), "'work'");
  t.equal(pyRepr("it's"), '"it\'s"');
  t.equal(pyRepr('a\\b\n'), "'a\\\\b\\n'");
  t.equal(pyRepr('both\'"'), "'both\\'\"'");
});

t.test('OK frame built once (OkReply) is sent as is', async (t) => {
  const r = new OkReply('dom0 class=AdminVM\né\n');
  t.equal(r.frame.toString('utf8'), '0\0dom0 class=AdminVM\né\n');
  t.equal(okFrame(r), r.frame, 'the very same buffer, not a copy');
  t.same([...okFrame(Buffer.from('ab'))], [0x30, 0, 0x61, 0x62]);
});
