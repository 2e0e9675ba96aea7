import t from 'tap';
import { encodeRequest, parseRequest } from '../../lib/protocol/request.js';

const p = (s: string) => parseRequest(Buffer.from(s, 'latin1'));

t.test('splits header and payload at the first NUL', async (t) => {
  const r = p('admin.vm.feature.Set+f dom0 name work\0a\0b');
  t.equal(r.method, 'admin.vm.feature.Set');
  t.equal(r.arg.toString(), 'f');
  t.equal(r.source.toString(), 'dom0');
  t.equal(r.dest.toString(), 'work');
  t.same([...r.payload], [...Buffer.from('a\0b')]);
});

t.test('argument is everything after the first plus', async (t) => {
  const r = p('admin.vm.property.Get+name+x dom0 name work\0');
  t.equal(r.method, 'admin.vm.property.Get');
  t.equal(r.arg.toString(), 'name+x');
  t.equal(p('admin.vm.List dom0 name dom0\0').arg.length, 0, 'no plus: empty argument');
  t.equal(p('admin.vm.List++ dom0 name dom0\0').arg.toString(), '+');
});

t.test('keyword adminvm means dom0; the destination keeps extra spaces', async (t) => {
  t.equal(p('admin.vm.List+ dom0 keyword adminvm\0').dest.toString(), 'dom0');
  t.equal(p('admin.vm.List+ dom0 name dom0 extra\0').dest.toString(), 'dom0 extra');
});

t.test('framing errors', async (t) => {
  for (const bad of [
    '',
    '\0',
    'admin.vm.List+ dom0 name dom0',
    'admin.vm.List+ dom0 dom0\0',
    'admin.vm.List+ dom0 keyword default\0',
    'admin.vm.List+ dom0 uuid 0\0',
    'admin.vm.List+  dom0 name dom0\0',
  ]) {
    t.throws(() => p(bad), { name: 'FramingError' }, JSON.stringify(bad));
  }
});

t.test('encodeRequest round-trips', async (t) => {
  const r = parseRequest(encodeRequest('admin.vm.tag.Set', 'x', 'mgmt', 'work', 'pl'));
  t.same([r.method, r.arg.toString(), r.source.toString(), r.dest.toString(), r.payload.toString()], ['admin.vm.tag.Set', 'x', 'mgmt', 'work', 'pl']);
});
