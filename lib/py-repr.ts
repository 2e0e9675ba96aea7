// Python's repr() of str values, tuples and lists of them, as Qubes (written
// in Python) puts names and values into its error messages. qubesd, the policy
// engine and the tools all quote this way; clients compare the messages with
// Qubes' own, so there is one implementation, here.

const NON_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

/** Python `repr()` of a str. */
export function pyRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    if (ch === quote || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch !== ' ' && NON_PRINTABLE.test(ch)) {
      const cp = ch.codePointAt(0)!;
      if (cp < 0x100) out += '\\x' + cp.toString(16).padStart(2, '0');
      else if (cp < 0x10000) out += '\\u' + cp.toString(16).padStart(4, '0');
      else out += '\\U' + cp.toString(16).padStart(8, '0');
    } else out += ch;
  }
  return out + quote;
}

/** Python `repr()` of a tuple of str. */
export function pyTupleRepr(items: readonly string[]): string {
  if (items.length === 1) return '(' + pyRepr(items[0]!) + ',)';
  return '(' + items.map(pyRepr).join(', ') + ')';
}

/** Python `repr()` of a list of str. */
export function pyListRepr(items: readonly string[]): string {
  return '[' + items.map(pyRepr).join(', ') + ']';
}
