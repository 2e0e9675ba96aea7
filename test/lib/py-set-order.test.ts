// The order CPython iterates a set of small integers in (Qubes shows the
// qubes of a backup profile's include list so, by qid). Each expected order
// was printed by CPython 3.11: list(set(x for x in ITEMS)).
import t from 'tap';
import { pySetOrder } from '../../lib/py-set-order.js';

const cases: Array<[number[], number[]]> = [
  [
    [12, 3, 9],
    [9, 3, 12],
  ],
  // two hashes in one slot, no room to probe linearly: a perturbed jump
  [
    [100, 36, 4],
    [100, 4, 36],
  ],
  // a resize (the table grows from 8 to 32 slots) reinserts in table order
  [
    [0, 8, 16, 24, 32],
    [0, 32, 8, 16, 24],
  ],
  [
    [20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
  ],
  [
    [5, 37, 69, 101, 133, 165],
    [101, 37, 69, 5, 133, 165],
  ],
  [
    [1000, 24, 3000, 57, 2048, 7, 99, 512, 33],
    [2048, 512, 33, 99, 7, 1000, 3000, 24, 57],
  ],
  [[], []],
];

t.test("CPython's set order", async (t) => {
  for (const [items, expected] of cases)
    t.same(
      pySetOrder(items, (x) => x),
      expected,
      `list(set(${JSON.stringify(items)}))`,
    );
});

t.test('an item whose hash is already there is not added again; hashes out of range are refused', async (t) => {
  t.same(
    pySetOrder(['a', 'b', 'c'], (x) => (x === 'c' ? 1 : 1)),
    ['a'],
  );
  t.throws(() => pySetOrder([1], () => -1), RangeError);
  t.throws(() => pySetOrder([1], () => 2 ** 40), RangeError);
});
