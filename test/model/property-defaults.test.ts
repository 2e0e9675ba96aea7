// Defaults that depend on other properties' defaults: a chain that comes
// back to where it started is an error that says so (Qubes recurses until
// Python gives up and drops the call), not an exhausted stack; the state
// that makes the next call is not left behind by the one that failed.
import t from 'tap';
import { QubesError } from '../../qubesd/errors.js';
import { getValue, PropTable, tryGet, type Holder, type PropDef } from '../../qubesd/model/properties.js';
import type { QubesApp } from '../../qubesd/model/app.js';

function def(name: string, dflt: (h: Holder) => string | null): PropDef {
  return { name, wire: 'str', py: 'str', stage: 1, help: '', dflt };
}

function holder(defs: PropDef[]): Holder {
  return {
    app: null as unknown as QubesApp,
    table: new PropTable(defs),
    values: new Map(),
    subject: 'q1',
    className: 'AppVM',
    str: () => 'q1',
    repr: () => '<AppVM q1>',
    touched: () => undefined,
  };
}

t.test('a default that comes back to itself', async (t) => {
  const h = holder([def('a', (x) => tryGet(x, 'b') as string), def('b', (x) => tryGet(x, 'a') as string), def('c', () => 'plain')]);
  const thrown = t.throws(() => getValue(h, h.table.byName.get('a')!)) as unknown;
  t.ok(thrown instanceof QubesError);
  t.equal((thrown as QubesError).type, 'QubesException');
  t.match((thrown as QubesError).message, /^the default value of property 'a' of q1 cannot be worked out: the default of 'a' of q1 depends on itself$/);
  // the depth is back to zero: an ordinary default still works, many times over
  for (let i = 0; i < 200; i++) t.equal(getValue(h, h.table.byName.get('c')!), 'plain');
  // once the chain is broken by a set value, it has one
  h.values.set('b', 'set');
  t.equal(getValue(h, h.table.byName.get('a')!), 'set');
});

t.test('a long chain that ends is not mistaken for a loop', async (t) => {
  const defs: PropDef[] = [];
  for (let i = 0; i < 40; i++) defs.push(def(`p${i}`, (x) => (i === 39 ? 'end' : (tryGet(x, `p${i + 1}`) as string))));
  const h = holder(defs);
  t.equal(getValue(h, h.table.byName.get('p0')!), 'end');
});
