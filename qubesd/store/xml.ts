// A small, strict XML 1.0 reader and an lxml-compatible writer.
//
// The reader accepts what qubes.xml can contain (elements, attributes, text,
// the five predefined entities, character references, comments, CDATA and an
// XML declaration) and refuses everything else with a line/column: DOCTYPE
// (no entity expansion surprises), processing instructions, malformed markup,
// characters XML forbids, invalid UTF-8. It never recurses, so a deeply
// nested hostile file cannot overflow the stack.
//
// The writer reproduces lxml's `tostring(..., encoding="utf-8",
// pretty_print=True)` byte for byte, which is how Qubes writes qubes.xml: no
// XML declaration (lxml omits it for UTF-8), two-space indentation, `<x/>`
// for elements without children, attribute order kept, and libxml2's escaping
// rules, which differ between text and attribute values (see escapeText and
// escapeAttr). Like libxml2, an element that has any text child is written
// without added indentation inside it, so mixed content is never altered.

export interface XmlElement {
  name: string;
  /** attributes in document order */
  attrs: Array<[string, string]>;
  children: XmlNode[];
}
export interface XmlComment {
  comment: string;
}
/** A text node is a plain string. */
export type XmlNode = XmlElement | XmlComment | string;

export function isElement(n: XmlNode): n is XmlElement {
  return typeof n === 'object' && 'name' in n;
}

export class XmlError extends Error {
  constructor(
    readonly reason: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`line ${line}, column ${column}: ${reason}`);
    this.name = 'XmlError';
  }
}

export interface ParseOptions {
  /**
   * Keep whitespace-only text between child elements (default false). When
   * dropped, an element with element children is re-indented on output, which
   * is what a pretty-printed document needs to round-trip.
   */
  keepBlank?: boolean;
}

// Characters XML 1.0 forbids anywhere (also as character references), and
// UTF-16 halves that do not form a pair.
const ILLEGAL_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** A quick first pass: no control character and no surrogate at all (the usual case). */
const MAYBE_ILLEGAL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF\uD800-\uDFFF]/;

function findIllegal(s: string): RegExpExecArray | null {
  return MAYBE_ILLEGAL.test(s) ? ILLEGAL_CHAR.exec(s) : null;
}
const BLANK = /^[ \t\n\r]*$/;
const SIMPLE_NAME = /^[A-Za-z_:][-A-Za-z0-9._:]*$/;

// ASCII name characters: 1 = may start a name, 2 = may continue one.
const ASCII_NAME = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const start = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c === 0x3a;
  ASCII_NAME[c] = start ? 3 : (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e ? 2 : 0;
}

function isNameStart(c: number): boolean {
  if (c < 128) return (ASCII_NAME[c]! & 1) !== 0;
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    c === 0x5f ||
    c === 0x3a ||
    (c >= 0xc0 && c <= 0xd6) ||
    (c >= 0xd8 && c <= 0xf6) ||
    (c >= 0xf8 && c <= 0x2ff) ||
    (c >= 0x370 && c <= 0x37d) ||
    (c >= 0x37f && c <= 0x1fff) ||
    (c >= 0x200c && c <= 0x200d) ||
    (c >= 0x2070 && c <= 0x218f) ||
    (c >= 0x2c00 && c <= 0x2fef) ||
    (c >= 0x3001 && c <= 0xd7ff) ||
    (c >= 0xf900 && c <= 0xfdcf) ||
    (c >= 0xfdf0 && c <= 0xfffd) ||
    (c >= 0xd800 && c <= 0xdbff)
  ); // first half of a supplementary-plane character (U+10000-U+EFFFF)
}
function isNameChar(c: number): boolean {
  if (c < 128) return ASCII_NAME[c] !== 0;
  return (
    isNameStart(c) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0xb7 ||
    (c >= 0x300 && c <= 0x36f) ||
    (c >= 0x203f && c <= 0x2040) ||
    (c >= 0xdc00 && c <= 0xdfff)
  );
}
function isXmlCodePoint(c: number): boolean {
  return c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
}
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
}

const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Parses a complete document and returns its root element. */
export function parseXml(input: string | Uint8Array, opts: ParseOptions = {}): XmlElement {
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = UTF8.decode(input);
    } catch {
      throw invalidUtf8(input);
    }
  }
  return new Parser(text, opts.keepBlank ?? false).document();
}

function invalidUtf8(b: Uint8Array): XmlError {
  // Find the first undecodable byte to report where it is.
  let lo = 0,
    hi = b.length;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    try {
      UTF8.decode(b.subarray(0, mid));
      lo = mid;
    } catch {
      hi = mid;
    }
  }
  // Back up to the start of the sequence that failed.
  let at = lo;
  while (at > 0 && (b[at]! & 0xc0) === 0x80) at--;
  const before = Buffer.from(b.subarray(0, at)).toString('utf8');
  const { line, column } = lineCol(before, before.length);
  return new XmlError('invalid UTF-8', line, column);
}

function lineCol(s: string, offset: number): { line: number; column: number } {
  let line = 1,
    start = 0;
  for (let i = s.indexOf('\n'); i !== -1 && i < offset; i = s.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

class Parser {
  private s: string;
  private pos = 0;
  constructor(
    s: string,
    private readonly keepBlank: boolean,
  ) {
    // XML end-of-line handling: CRLF and lone CR read as LF (line numbers are unchanged).
    this.s = s.includes('\r') ? s.replace(/\r\n?/g, '\n') : s;
  }

  private fail(reason: string, at = this.pos): never {
    const { line, column } = lineCol(this.s, at);
    throw new XmlError(reason, line, column);
  }

  document(): XmlElement {
    const s = this.s;
    if (s.charCodeAt(0) === 0xfeff) this.pos = 1;
    const bad = findIllegal(s);
    if (bad) this.fail(`character U+${bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} is not allowed in XML`, bad.index);
    if (s.startsWith('<?xml', this.pos) && isSpace(s.charCodeAt(this.pos + 5))) this.declaration();
    this.misc();
    if (this.pos >= s.length) this.fail('no root element');
    if (s.charCodeAt(this.pos) !== 0x3c) this.fail('text is not allowed outside the root element');
    const root = this.elementTree();
    this.misc();
    if (this.pos < s.length) {
      this.fail(s.charCodeAt(this.pos) === 0x3c ? 'only one root element is allowed' : 'text is not allowed outside the root element');
    }
    return root;
  }

  private declaration(): void {
    const s = this.s;
    const start = this.pos;
    const end = s.indexOf('?>', start);
    if (end === -1) this.fail('unterminated XML declaration');
    const body = s.slice(start + 5, end);
    const m =
      /^\s+version\s*=\s*(?:"(1\.\d+)"|'(1\.\d+)')(?:\s+encoding\s*=\s*(?:"([A-Za-z][-\w.]*)"|'([A-Za-z][-\w.]*)'))?(?:\s+standalone\s*=\s*(?:"(yes|no)"|'(yes|no)'))?\s*$/.exec(
        body,
      );
    if (!m) this.fail('malformed XML declaration', start);
    const enc = (m[3] ?? m[4])?.toLowerCase();
    if (enc !== undefined && !['utf-8', 'utf8', 'us-ascii', 'ascii'].includes(enc))
      this.fail(`unsupported encoding ${m[3] ?? m[4]} (only UTF-8 is supported)`, start);
    this.pos = end + 2;
  }

  /** Whitespace and comments around the root element. */
  private misc(): void {
    const s = this.s;
    for (;;) {
      while (this.pos < s.length && isSpace(s.charCodeAt(this.pos))) this.pos++;
      if (s.startsWith('<!--', this.pos)) {
        this.comment();
        continue;
      }
      if (s.startsWith('<?', this.pos)) this.pi();
      if (s.startsWith('<!', this.pos)) this.fail(s.startsWith('<!DOCTYPE', this.pos) ? 'DOCTYPE is not allowed' : 'malformed markup');
      return;
    }
  }

  private pi(): never {
    if (this.s.startsWith('<?xml', this.pos) && !isNameChar(this.s.charCodeAt(this.pos + 5)))
      this.fail('XML declaration is only allowed at the start of the document');
    this.fail('processing instructions are not supported');
  }

  private comment(): string {
    const s = this.s;
    const start = this.pos;
    const end = s.indexOf('-->', start + 4);
    if (end === -1) this.fail('unterminated comment', start);
    const body = s.slice(start + 4, end);
    const dd = body.indexOf('--');
    if (dd !== -1) this.fail("'--' is not allowed inside a comment", start + 4 + dd);
    if (body.endsWith('-')) this.fail("a comment must not end with '--->'", end - 1);
    this.pos = end + 3;
    return body;
  }

  private name(what: string): string {
    const s = this.s;
    const start = this.pos;
    if (!isNameStart(s.charCodeAt(start))) this.fail(`expected ${what}`);
    let i = start + 1;
    while (i < s.length && isNameChar(s.charCodeAt(i))) i++;
    this.pos = i;
    return s.slice(start, i);
  }

  private skipSpace(): boolean {
    const s = this.s;
    const start = this.pos;
    while (this.pos < s.length && isSpace(s.charCodeAt(this.pos))) this.pos++;
    return this.pos > start;
  }

  /** Parses `<name attrs...>` or `<name .../>`; pos is at '<'. */
  private startTag(): { el: XmlElement; empty: boolean } {
    const s = this.s;
    this.pos++;
    const el: XmlElement = { name: this.name('an element name'), attrs: [], children: [] };
    for (;;) {
      const spaced = this.skipSpace();
      const c = s.charCodeAt(this.pos);
      if (c === 0x3e) {
        this.pos++;
        return { el, empty: false };
      }
      if (c === 0x2f) {
        if (s.charCodeAt(this.pos + 1) !== 0x3e) this.fail("expected '>' after '/'", this.pos + 1);
        this.pos += 2;
        return { el, empty: true };
      }
      if (this.pos >= s.length) this.fail(`unexpected end of input in the start tag of <${el.name}>`);
      if (!spaced) this.fail('expected whitespace before an attribute');
      const at = this.pos;
      const name = this.name('an attribute name');
      this.skipSpace();
      if (s.charCodeAt(this.pos) !== 0x3d) this.fail(`expected '=' after attribute ${name}`);
      this.pos++;
      this.skipSpace();
      const q = s.charCodeAt(this.pos);
      if (q !== 0x22 && q !== 0x27) this.fail(`expected a quoted value for attribute ${name}`);
      const vstart = this.pos + 1;
      const vend = s.indexOf(q === 0x22 ? '"' : "'", vstart);
      if (vend === -1) this.fail(`unterminated value of attribute ${name}`, this.pos);
      let raw = s.slice(vstart, vend);
      const lt = raw.indexOf('<');
      if (lt !== -1) this.fail("'<' is not allowed in an attribute value", vstart + lt);
      // Attribute-value normalisation: literal whitespace reads as a space
      // (a character reference such as &#10; keeps its character).
      if (/[\t\n]/.test(raw)) raw = raw.replace(/[\t\n]/g, ' ');
      const value = raw.includes('&') ? this.entities(raw, vstart) : raw;
      for (const [k] of el.attrs) if (k === name) this.fail(`duplicate attribute ${name}`, at);
      el.attrs.push([name, value]);
      this.pos = vend + 1;
    }
  }

  /** Expands references in raw text that starts at offset `base` of the input. */
  private entities(raw: string, base: number): string {
    let out = '';
    let last = 0;
    for (let amp = raw.indexOf('&'); amp !== -1; amp = raw.indexOf('&', last)) {
      out += raw.slice(last, amp);
      const semi = raw.indexOf(';', amp + 1);
      const ref = semi === -1 ? '' : raw.slice(amp + 1, semi);
      if (semi === -1 || !/^(?:#[0-9]+|#x[0-9A-Fa-f]+|[A-Za-z_:][-\w.:]*)$/.test(ref)) {
        this.fail("'&' must start an entity or character reference such as &amp;", base + amp);
      }
      if (ref.charCodeAt(0) === 0x23) {
        const code = ref.charCodeAt(1) === 0x78 ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
        if (!isXmlCodePoint(code)) this.fail(`character reference &${ref}; is not a legal XML character`, base + amp);
        out += String.fromCodePoint(code);
      } else {
        const v = PREDEFINED[ref];
        if (v === undefined) this.fail(`undefined entity &${ref};`, base + amp);
        out += v;
      }
      last = semi + 1;
    }
    return out + raw.slice(last);
  }

  /** The root element and everything inside it, without recursion. */
  private elementTree(): XmlElement {
    const s = this.s;
    const first = this.startTag();
    if (first.empty) return first.el;
    const stack: XmlElement[] = [first.el];
    for (;;) {
      const top = stack[stack.length - 1]!;
      const lt = s.indexOf('<', this.pos);
      if (lt === -1) this.fail(`unexpected end of input: <${top.name}> is not closed`, s.length);
      if (lt > this.pos) {
        const raw = s.slice(this.pos, lt);
        const cdataEnd = raw.indexOf(']]>');
        if (cdataEnd !== -1) this.fail("']]>' is not allowed in text", this.pos + cdataEnd);
        this.text(top, raw.includes('&') ? this.entities(raw, this.pos) : raw);
        this.pos = lt;
      }
      const c = s.charCodeAt(lt + 1);
      if (c === 0x2f) {
        // end tag
        this.pos = lt + 2;
        const at = this.pos;
        const name = this.name('an element name');
        this.skipSpace();
        if (s.charCodeAt(this.pos) !== 0x3e) this.fail(`expected '>' to end </${name}>`);
        if (name !== top.name) this.fail(`</${name}> does not match <${top.name}>`, at);
        this.pos++;
        stack.pop();
        if (!this.keepBlank) dropBlankText(top);
        if (stack.length === 0) return top;
      } else if (c === 0x21) {
        // <!
        if (s.startsWith('<!--', lt)) top.children.push({ comment: this.comment() });
        else if (s.startsWith('<![CDATA[', lt)) {
          const end = s.indexOf(']]>', lt + 9);
          if (end === -1) this.fail('unterminated CDATA section', lt);
          this.text(top, s.slice(lt + 9, end));
          this.pos = end + 3;
        } else this.fail(s.startsWith('<!DOCTYPE', lt) ? 'DOCTYPE is not allowed' : 'malformed markup', lt);
      } else if (c === 0x3f) {
        // <?
        this.pos = lt;
        this.pi();
      } else {
        this.pos = lt;
        const { el, empty } = this.startTag();
        top.children.push(el);
        if (!empty) stack.push(el);
      }
    }
  }

  private text(parent: XmlElement, t: string): void {
    const n = parent.children.length;
    if (n > 0 && typeof parent.children[n - 1] === 'string') parent.children[n - 1] += t;
    else if (t !== '') parent.children.push(t);
  }
}

function dropBlankText(el: XmlElement): void {
  const ch = el.children;
  if (!ch.some((n) => typeof n === 'string') || !ch.some((n) => typeof n !== 'string')) return;
  el.children = ch.filter((n) => typeof n !== 'string' || !BLANK.test(n));
}

// ---------------------------------------------------------------------------
// Writing

/** A string refused by the writer: it would not make a loadable document. */
export class XmlWriteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XmlWriteError';
  }
}

/** Throws XmlWriteError when `s` holds a character XML cannot represent. */
export function checkChars(s: string, what: string): void {
  const bad = findIllegal(s);
  if (bad) throw new XmlWriteError(`${what} contains U+${bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}, which XML cannot represent`);
}

export function checkName(name: string): void {
  if (SIMPLE_NAME.test(name)) return;
  const ok = name.length > 0 && isNameStart(name.charCodeAt(0)) && [...name.slice(1)].every((ch) => isNameChar(ch.charCodeAt(0)));
  if (!ok) throw new XmlWriteError(`${JSON.stringify(name)} is not a valid XML name`);
}

const TEXT_SPECIAL = /[&<>\r]/;
const ATTR_SPECIAL = /[&<>"\t\n\r]/;

/** Text content as libxml2 writes it: & < > and CR escaped, quotes left alone. */
export function escapeText(s: string): string {
  checkChars(s, 'text');
  if (!TEXT_SPECIAL.test(s)) return s;
  return s.replace(/[&<>\r]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&#13;'));
}

/**
 * Attribute values as libxml2 writes them: also the double quote, and tab,
 * LF and CR as character references so that they survive normalisation.
 */
export function escapeAttr(s: string): string {
  checkChars(s, 'attribute value');
  if (!ATTR_SPECIAL.test(s)) return s;
  return s.replace(/[&<>"\t\n\r]/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      case '\t':
        return '&#9;';
      case '\n':
        return '&#10;';
      default:
        return '&#13;';
    }
  });
}

const INDENTS: string[] = [''];
export function indent(depth: number): string {
  while (INDENTS.length <= depth) INDENTS.push(INDENTS[INDENTS.length - 1] + '  ');
  return INDENTS[depth]!;
}

/** `<name a="v" ...` (without the closing bracket). */
export function openTag(name: string, attrs: ReadonlyArray<readonly [string, string]>): string {
  checkName(name);
  let out = '<' + name;
  for (const [k, v] of attrs) {
    checkName(k);
    out += ' ' + k + '="' + escapeAttr(v) + '"';
  }
  return out;
}

/**
 * One element as lxml pretty-prints it when it sits at `depth` (its first
 * line is not indented and no newline follows it).
 */
export function serializeElement(el: XmlElement, depth = 0): string {
  const out: string[] = [];
  writeElement(el, depth, true, out);
  return out.join('');
}

/** A whole document: the root element and a final newline, no declaration. */
export function serializeXml(root: XmlElement): string {
  return serializeElement(root, 0) + '\n';
}

function writeElement(el: XmlElement, depth: number, format: boolean, out: string[]): void {
  out.push(openTag(el.name, el.attrs));
  const ch = el.children;
  if (ch.length === 0) {
    out.push('/>');
    return;
  }
  out.push('>');
  const fmt = format && !ch.some((n) => typeof n === 'string');
  const inner = fmt ? '\n' + indent(depth + 1) : '';
  for (const n of ch) {
    out.push(inner);
    if (typeof n === 'string') out.push(escapeText(n));
    else if ('comment' in n) out.push(commentText(n.comment));
    else writeElement(n, depth + 1, fmt, out);
  }
  if (fmt) out.push('\n' + indent(depth));
  out.push('</' + el.name + '>');
}

function commentText(c: string): string {
  checkChars(c, 'comment');
  if (c.includes('--') || c.endsWith('-')) throw new XmlWriteError("a comment cannot contain '--' or end with '-'");
  return '<!--' + c + '-->';
}
