import t from 'tap';
import { XdrError, XdrReader, XdrWriter } from '../../qubesd/hypervisor/libvirt/xdr.js';
import { uuidFromBytes, uuidToBytes } from '../../qubesd/hypervisor/libvirt/protocol.js';

t.test('strings are length-prefixed and padded to 4 bytes (RFC 4506 4.11)', async (t) => {
  t.equal(new XdrWriter().string('').toBuffer().toString('hex'), '00000000');
  t.equal(new XdrWriter().string('a').toBuffer().toString('hex'), '0000000161000000');
  t.equal(new XdrWriter().string('abcd').toBuffer().toString('hex'), '0000000461626364');
  t.equal(new XdrWriter().string('é').toBuffer().toString('hex'), '00000002c3a90000', 'UTF-8 bytes are counted, not characters');
});

t.test('integers, hypers, booleans, optionals, arrays', async (t) => {
  const w = new XdrWriter(4)
    .int(-2)
    .uint(0xffffffff)
    .hyper(-1n)
    .uhyper(2n ** 63n)
    .bool(true)
    .optional(null, (x, v: number) => x.int(v))
    .optional(7, (x, v) => x.int(v))
    .array([1, 2], (x, v) => x.uint(v));
  t.equal(
    w.toBuffer().toString('hex'),
    'fffffffe' + 'ffffffff' + 'ffffffffffffffff' + '8000000000000000' + '00000001' + '00000000' + '0000000100000007' + '000000020000000100000002',
  );
  const r = new XdrReader(w.toBuffer());
  t.equal(r.int(), -2);
  t.equal(r.uint(), 0xffffffff);
  t.equal(r.hyper(), -1n);
  t.equal(r.uhyper(), 2n ** 63n);
  t.equal(r.bool(), true);
  t.equal(
    r.optional((x) => x.int()),
    null,
  );
  t.equal(
    r.optional((x) => x.int()),
    7,
  );
  t.same(
    r.array((x) => x.uint()),
    [1, 2],
  );
  r.end();
});

t.test('bad input fails cleanly', async (t) => {
  t.throws(() => new XdrWriter().int(2 ** 31), XdrError);
  t.throws(() => new XdrWriter().uint(-1), XdrError);
  t.throws(() => new XdrWriter().int(1.5), XdrError);
  t.throws(() => new XdrReader(Buffer.from('000000', 'hex')).int(), XdrError, 'truncated int');
  t.throws(() => new XdrReader(Buffer.from('0000000561', 'hex')).string(), XdrError, 'truncated string');
  t.throws(() => new XdrReader(Buffer.from('00000010', 'hex')).string(8), XdrError, 'string over its limit');
  t.throws(() => new XdrReader(Buffer.from('00000002', 'hex')).bool(), XdrError, 'boolean other than 0/1');
  t.throws(() => new XdrReader(Buffer.from('0000000100000000', 'hex')).array((x) => x.int(), 0), XdrError, 'array over its limit');
  const r = new XdrReader(Buffer.from('0000000100000002', 'hex'));
  r.int();
  t.throws(() => r.end(), XdrError, 'trailing bytes are a layout mismatch');
});

t.test('UUIDs', async (t) => {
  const u = '6695eb01-f6a4-8304-79aa-97f2502e193f';
  t.equal(uuidToBytes(u).length, 16);
  t.equal(uuidFromBytes(uuidToBytes(u)), u);
  t.throws(() => uuidToBytes('6695eb01'), TypeError);
});
