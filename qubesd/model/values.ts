// Property values and how Qubes turns them into text. Qubes keeps typed
// Python objects and calls str() on them when replying, saving and sending
// events; these helpers give the same text for our values.
import type { Label } from './labels.js';

/** Anything with a name that prints as that name (a qube). */
export interface Named {
  readonly name: string;
}

/** A property value: int (number, or bigint beyond 2^53), str, bool, qube, label, or None. */
export type Value = string | number | bigint | boolean | Named | Label | null;

/** Python str() of a value: None -> 'None' (events and reprs). */
export function pyStr(v: Value): string {
  if (v === null) return 'None';
  return plainStr(v);
}

/** The value as Qubes shows it in replies and qubes.xml: None -> ''. */
export function wireStr(v: Value): string {
  if (v === null) return '';
  return plainStr(v);
}

function plainStr(v: Exclude<Value, null>): string {
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'object') return v.name;
  return String(v);
}

/** Python truthiness, for the places where Qubes tests "if value". */
export function truthy(v: Value | undefined): boolean {
  if (v === null || v === undefined) return false;
  if (typeof v === 'string') return v.length > 0;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'bigint') return v !== 0n;
  if (typeof v === 'boolean') return v;
  return true;
}

/** Python int() of an already ASCII-decoded string; null when it is not one. */
export function parsePyInt(s: string): number | bigint | null {
  const m = /^[ \t\n\r\x0b\x0c]*([+-]?)(\d+(?:_\d+)*)[ \t\n\r\x0b\x0c]*$/.exec(s);
  if (!m) return null;
  const big = BigInt(m[1] + m[2]!.replace(/_/g, ''));
  return normInt(big);
}

export function normInt(big: bigint): number | bigint {
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}
