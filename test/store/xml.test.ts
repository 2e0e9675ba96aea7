import t from 'tap';
import { parseXml, serializeElement, serializeXml, escapeAttr, escapeText, XmlError, XmlWriteError, type XmlElement } from '../../qubesd/store/xml.js';

t.test('parses elements, attributes, text, entities and character references', async (t) => {
  const root = parseXml(
    '<?xml version="1.0" encoding="UTF-8"?>\n<!-- head -->\n<a x="1" y=\'&quot;2&apos;\'>t &amp; &lt;u&gt; &#65;&#x42;&#x1F600;<b/><![CDATA[<raw>&]]></a>\n',
  );
  t.equal(root.name, 'a');
  t.same(root.attrs, [
    ['x', '1'],
    ['y', '"2\''],
  ]);
  t.same(root.children, ['t & <u> AB\u{1F600}', { name: 'b', attrs: [], children: [] }, '<raw>&']);
});

t.test('keeps attribute order and normalises literal whitespace in attribute values', async (t) => {
  const root = parseXml('<a z="1" a="2" m="x\ty\nz" r="x&#9;y&#10;z"/>');
  t.same(
    root.attrs.map(([k]) => k),
    ['z', 'a', 'm', 'r'],
  );
  t.equal(root.attrs[2]![1], 'x y z');
  t.equal(root.attrs[3]![1], 'x\ty\nz');
});

t.test('reads CRLF and lone CR as LF', async (t) => {
  t.same(parseXml('<a>1\r\n2\r3</a>').children, ['1\n2\n3']);
});

t.test('drops indentation between elements but keeps text-only content', async (t) => {
  const root = parseXml('<a>\n  <b>  </b>\n  <!--c-->\n</a>');
  t.same(root.children, [{ name: 'b', attrs: [], children: ['  '] }, { comment: 'c' }]);
  const kept = parseXml('<a>\n  <b/>\n</a>', { keepBlank: true });
  t.equal(kept.children.length, 3);
});

t.test('accepts a UTF-8 byte buffer with a BOM and multibyte names', async (t) => {
  const root = parseXml(Buffer.from('\uFEFF<é a="ü">€</é>', 'utf8'));
  t.equal(root.name, 'é');
  t.same(root.children, ['€']);
});

const malformed: Array<[string, string | Uint8Array, RegExp, number, number]> = [
  ['empty document', '', /no root element/, 1, 1],
  ['unclosed element', '<a>\n  <b>\n</a>', /<\/a> does not match <b>/, 3, 3],
  ['unterminated', '<a><b></b>', /<a> is not closed/, 1, 11],
  ['two roots', '<a/><b/>', /only one root/, 1, 5],
  ['text after root', '<a/>x', /text is not allowed outside/, 1, 5],
  ['duplicate attribute', '<a x="1" x="2"/>', /duplicate attribute x/, 1, 10],
  ['unquoted attribute', '<a x=1/>', /quoted value/, 1, 6],
  ['missing space between attributes', '<a x="1"y="2"/>', /whitespace before an attribute/, 1, 9],
  ['< in attribute', '<a x="<"/>', /'<' is not allowed/, 1, 7],
  ['bare ampersand', '<a>\n x & y</a>', /'&' must start/, 2, 4],
  ['undefined entity', '<a>&nbsp;</a>', /undefined entity &nbsp;/, 1, 4],
  ['illegal character reference', '<a>&#0;</a>', /not a legal XML character/, 1, 4],
  ['control character', '<a>\u0001</a>', /U\+0001 is not allowed/, 1, 4],
  ['doctype', '<!DOCTYPE a [<!ENTITY x "y">]><a/>', /DOCTYPE is not allowed/, 1, 1],
  ['processing instruction', '<a><?pi x?></a>', /processing instructions/, 1, 4],
  ['late XML declaration', '<a/>\n<?xml version="1.0"?>', /only allowed at the start/, 2, 1],
  ['bad declaration', '<?xml encoding="utf-8"?><a/>', /malformed XML declaration/, 1, 1],
  ['foreign encoding', '<?xml version="1.0" encoding="ISO-8859-1"?><a/>', /unsupported encoding/, 1, 1],
  ['double hyphen in comment', '<a><!-- a -- b --></a>', /'--' is not allowed/, 1, 11],
  [']]> in text', '<a>x]]>y</a>', /']]>' is not allowed/, 1, 5],
  ['bad name', '<1a/>', /expected an element name/, 1, 2],
  ['invalid UTF-8', Buffer.from([0x3c, 0x61, 0x3e, 0x0a, 0x78, 0xff, 0x3c, 0x2f, 0x61, 0x3e]), /invalid UTF-8/, 2, 2],
];
for (const [name, input, reason, line, column] of malformed) {
  t.test(`rejects ${name} with its position`, async (t) => {
    try {
      parseXml(input);
      t.fail('accepted');
    } catch (e) {
      t.ok(e instanceof XmlError, 'an XmlError');
      const x = e as XmlError;
      t.match(x.reason, reason);
      t.same([x.line, x.column], [line, column]);
      t.match(x.message, new RegExp(`^line ${line}, column ${column}: `));
    }
  });
}

t.test('does not recurse: a very deep document is parsed', async (t) => {
  const depth = 200000;
  const root = parseXml('<a>'.repeat(depth) + '</a>'.repeat(depth));
  let d = 1;
  for (let n: XmlElement = root; n.children.length; n = n.children[0] as XmlElement) d++;
  t.equal(d, depth);
});

t.test('escapes text and attribute values as libxml2 does', async (t) => {
  t.equal(escapeText(`a&b<c>d"e'f\tg\nh\ri`), `a&amp;b&lt;c&gt;d"e'f\tg\nh&#13;i`);
  t.equal(escapeAttr(`a&b<c>d"e'f\tg\nh\ri`), `a&amp;b&lt;c&gt;d&quot;e'f&#9;g&#10;h&#13;i`);
  t.equal(escapeText('é € \u{1F600}'), 'é € \u{1F600}', 'non-ASCII is written as UTF-8');
  t.throws(() => escapeText('a\u0002'), XmlWriteError);
  t.throws(() => escapeAttr('\uD800'), XmlWriteError);
});

t.test('writes the lxml pretty_print layout', async (t) => {
  const el: XmlElement = {
    name: 'qubes',
    attrs: [],
    children: [
      {
        name: 'empty',
        attrs: [
          ['b', '2'],
          ['a', '1'],
        ],
        children: [],
      },
      { name: 'blank', attrs: [], children: [''] },
      { name: 'list', attrs: [], children: [{ name: 'i', attrs: [], children: ['x'] }, { comment: ' c ' }] },
      { name: 'mixed', attrs: [], children: ['t', { name: 'b', attrs: [], children: [{ name: 'c', attrs: [], children: [] }] }, 'u'] },
    ],
  };
  t.equal(
    serializeXml(el),
    [
      '<qubes>',
      '  <empty b="2" a="1"/>',
      '  <blank></blank>',
      '  <list>',
      '    <i>x</i>',
      '    <!-- c -->',
      '  </list>',
      '  <mixed>t<b><c/></b>u</mixed>',
      '</qubes>',
      '',
    ].join('\n'),
  );
  t.equal(serializeElement({ name: 'd', attrs: [], children: [{ name: 'e', attrs: [], children: [] }] }, 2), '<d>\n      <e/>\n    </d>');
});

t.test('parse -> serialize -> parse is stable and serialize is a fixed point', async (t) => {
  const src = '<r a="&lt;&amp;&quot;&#10;">\n  <x>1 &amp; 2</x>\n  <y z="\'"/>\n  <m>a<b/>c</m>\n  <w>  </w>\n</r>\n';
  const once = serializeXml(parseXml(src));
  t.equal(once, src);
  t.equal(serializeXml(parseXml(once)), once);
});

t.test('refuses to write what would not load back', async (t) => {
  t.throws(() => serializeXml({ name: 'a b', attrs: [], children: [] }), XmlWriteError);
  t.throws(() => serializeXml({ name: 'a', attrs: [['1x', '']], children: [] }), XmlWriteError);
  t.throws(() => serializeXml({ name: 'a', attrs: [], children: [{ comment: 'x--y' }] }), XmlWriteError);
});
