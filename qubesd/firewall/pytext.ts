// The few Python string and number conversions that Qubes' firewall rule
// parser leans on. Qubes accepts exactly what these accept, so a rule that
// Qubes takes (or refuses) must go the same way here.
import { pyRepr } from '../../lib/py-repr.js';

/** Characters Python's str.isspace() is true for, within ASCII. */
const PY_SPACE = ' \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f';

/** str.strip() with no argument, for ASCII text. */
export function pyStrip(s: string): string {
  let a = 0,
    b = s.length;
  while (a < b && PY_SPACE.includes(s[a]!)) a++;
  while (b > a && PY_SPACE.includes(s[b - 1]!)) b--;
  return s.slice(a, b);
}

/** str.splitlines() for ASCII text: no empty last line after a final break. */
export function pySplitLines(s: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\r' && s[i + 1] === '\n') {
      out.push(s.slice(start, i));
      i++;
      start = i + 1;
      continue;
    }
    if ('\n\r\x0b\x0c\x1c\x1d\x1e'.includes(c)) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  if (start < s.length) out.push(s.slice(start));
  return out;
}

/** str.isdigit() for ASCII text (false for ''). */
export function pyIsDigit(s: string): boolean {
  return /^[0-9]+$/.test(s);
}

/**
 * int(s) for a str: surrounding whitespace, a sign, and single underscores
 * between digits are accepted. Throws with Python's message otherwise.
 */
export function pyInt(s: string): number {
  const t = pyStrip(s);
  if (!/^[+-]?[0-9]+(?:_[0-9]+)*$/.test(t)) throw new Error(`invalid literal for int() with base 10: ${pyRepr(s)}`);
  return Number(t.replace(/_/g, ''));
}

/** glibc inet_pton(AF_INET): exactly four decimal octets, no leading zeros. */
export function isInet4(s: string): boolean {
  let octets = 0,
    cur = 0,
    sawDigit = false;
  for (const ch of s) {
    if (ch >= '0' && ch <= '9') {
      if (sawDigit && cur === 0) return false;
      cur = cur * 10 + (ch.charCodeAt(0) - 48);
      if (cur > 255) return false;
      if (!sawDigit) {
        if (++octets > 4) return false;
        sawDigit = true;
      }
    } else if (ch === '.' && sawDigit) {
      if (octets === 4) return false;
      cur = 0;
      sawDigit = false;
    } else return false;
  }
  return octets === 4 && sawDigit;
}

/** glibc inet_pton(AF_INET6): hex groups, one '::', an optional trailing IPv4. */
export function isInet6(s: string): boolean {
  let i = 0;
  if (s[0] === ':' && s[1] !== ':') return false;
  if (s[0] === ':') i = 1;
  let bytes = 0,
    compressed = false,
    sawHex = false,
    digits = 0,
    tokenStart = i;
  while (i < s.length) {
    const ch = s[i++]!;
    if (/[0-9a-fA-F]/.test(ch)) {
      if (++digits > 4) return false;
      sawHex = true;
      continue;
    }
    if (ch === ':') {
      tokenStart = i;
      if (!sawHex) {
        if (compressed) return false;
        compressed = true;
        continue;
      }
      if (i >= s.length) return false;
      if (bytes + 2 > 16) return false;
      bytes += 2;
      sawHex = false;
      digits = 0;
      continue;
    }
    if (ch === '.' && bytes + 4 <= 16 && isInet4(s.slice(tokenStart))) {
      bytes += 4;
      sawHex = false;
      i = s.length;
      break;
    }
    return false;
  }
  if (sawHex) {
    if (bytes + 2 > 16) return false;
    bytes += 2;
  }
  if (compressed) {
    if (bytes === 16) return false;
    bytes = 16;
  }
  return bytes === 16;
}
