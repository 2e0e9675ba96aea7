// Text rules of the reference engine, which is written in Python: what counts
// as whitespace when a line is split into fields, and how a file is cut into
// lines. Users and tools compare our messages with Qubes' ones, so these must
// agree. (How strings are quoted in messages: lib/py-repr.ts.)

// Characters for which Python's str.isspace() is true (used by split/strip).
const WHITESPACE = new Set<string>([
  '\t',
  '\n',
  '\x0b',
  '\x0c',
  '\r',
  '\x1c',
  '\x1d',
  '\x1e',
  '\x1f',
  ' ',
  '\x85',
  '\xa0',
  '\u1680',
  '\u2000',
  '\u2001',
  '\u2002',
  '\u2003',
  '\u2004',
  '\u2005',
  '\u2006',
  '\u2007',
  '\u2008',
  '\u2009',
  '\u200a',
  '\u2028',
  '\u2029',
  '\u202f',
  '\u205f',
  '\u3000',
]);

export function isSpace(ch: string): boolean {
  return WHITESPACE.has(ch);
}

/** Fields of a line separated by runs of whitespace (Python `str.split()`). */
export function splitFields(line: string): string[] {
  const out: string[] = [];
  let start = -1;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    const ws = ch.charCodeAt(0) <= 0x20 ? ch === ' ' || (ch >= '\t' && ch <= '\r') || (ch >= '\x1c' && ch <= '\x1f') : WHITESPACE.has(ch);
    if (ws) {
      if (start >= 0) {
        out.push(line.slice(start, i));
        start = -1;
      }
    } else if (start < 0) start = i;
  }
  if (start >= 0) out.push(line.slice(start));
  return out;
}

/** Python `str.strip()`. */
export function strip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && WHITESPACE.has(s[a]!)) a++;
  while (b > a && WHITESPACE.has(s[b - 1]!)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/**
 * Lines of a policy file read from disk: Python's text mode turns "\r\n" and
 * a lone "\r" into line ends too. Content handed over by the admin API is
 * split on "\n" only, as the reference does for in-memory files.
 */
export function splitLines(text: string, universal: boolean): string[] {
  const lines = universal ? text.split(/\r\n|\r|\n/) : text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}
