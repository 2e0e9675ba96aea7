// internal.GetSystemInfo's JSON is laid out as Python's json.dumps lays it out
// (the policy engine of Qubes reads it). Expected text from Python 3's
// json.dumps of the same value.
import t from 'tap';
import { pyJson } from '../../qubesd/api/handlers/internal.js';

t.test("pyJson writes what Python's json.dumps writes", async (t) => {
  const v = {
    name: 'work',
    tags: ['a"b', 'c\\\\d', 'été', '\x7f', '\u2028', '😀', 'tab\there'],
    n: null,
    t: true,
    f: false,
    i: -12,
    nested: { x: [], y: {} },
  };
  t.equal(
    pyJson(v),
    String.raw`{"name": "work", "tags": ["a\"b", "c\\\\d", "\u00e9t\u00e9", "\u007f", "\u2028", "\ud83d\ude00", "tab\there"], "n": null, "t": true, "f": false, "i": -12, "nested": {"x": [], "y": {}}}`,
  );
  t.equal(pyJson({ domains: {} }), '{"domains": {}}');
  t.equal(pyJson(['plain', '']), '["plain", ""]');
});
