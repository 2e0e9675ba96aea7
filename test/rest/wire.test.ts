// parseGetAll (rest/wire.ts): admin.vm.property.GetAll's text as typed values,
// whole or only the properties a request needs. Both ways must give the same
// value for a property: first line, middle, last line without a newline, a
// name that is a prefix of another, escaped newlines and backslashes, a
// property the reply does not have.
import t from 'tap';
import { parseGetAll } from '../../rest/wire.js';

const REPLY = [
  'autostart default=True type=bool False',
  'debug default=False type=bool True',
  'default_user default=True type=str user',
  'kernelopts default=False type=str a\\nb\\\\c',
  'label default=False type=label red',
  'maxmem default=True type=int 4000',
  'memory default=False type=int 400',
  'netvm default=False type=vm ',
  'vcpus default=True type=int 2',
].join('\n');

t.test('the whole reply', async (t) => {
  const all = parseGetAll(REPLY + '\n');
  t.equal(all.size, 9);
  t.same(all.get('autostart'), { value: false, type: 'bool', isDefault: true });
  t.same(all.get('kernelopts'), { value: 'a\nb\\c', type: 'str', isDefault: false });
  t.same(all.get('netvm'), { value: null, type: 'vm', isDefault: false });
  t.same(all.get('vcpus'), { value: 2, type: 'int', isDefault: true });
});

t.test('only some properties: looked up, the same values', async (t) => {
  const some = parseGetAll(REPLY, new Set(['autostart', 'memory', 'kernelopts', 'vcpus', 'tags', 'mem']));
  t.same([...some.keys()].sort(), ['autostart', 'kernelopts', 'memory', 'vcpus'], 'absent names are left out; "mem" is not "memory"');
  t.same(some.get('autostart'), { value: false, type: 'bool', isDefault: true }, 'the first line');
  t.same(some.get('memory'), { value: 400, type: 'int', isDefault: false }, 'a line in the middle, not maxmem');
  t.same(some.get('kernelopts'), { value: 'a\nb\\c', type: 'str', isDefault: false }, 'escapes undone');
  t.same(some.get('vcpus'), { value: 2, type: 'int', isDefault: true }, 'the last line, no newline after it');
  const odd = parseGetAll(REPLY, new Set(['memory default=False type=int 400\nnetvm', '', 'label']));
  t.same([...odd.keys()], ['label'], 'a name with a newline or blank matches no line, even across two');
});

t.test('only many properties: the line-by-line path, the same values', async (t) => {
  const names = ['autostart', 'debug', 'default_user', 'kernelopts', 'label', 'maxmem', 'memory', 'netvm', 'vcpus', 'nothing'];
  const many = parseGetAll(REPLY, new Set(names));
  t.equal(many.size, 9);
  t.same(many.get('label'), { value: 'red', type: 'label', isDefault: false });
  t.same(many.get('maxmem'), { value: 4000, type: 'int', isDefault: true });
  t.same(many.get('kernelopts'), { value: 'a\nb\\c', type: 'str', isDefault: false });
  t.same(parseGetAll(REPLY, new Set([...names.slice(0, 8), 'x', 'y'])).has('vcpus'), false, 'a name not asked for is left out');
});
