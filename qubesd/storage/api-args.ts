// Parsing of untrusted Admin API payloads for the storage calls, with
// Qubes' checks and wording (qubes/api/__init__.py, qubes/api/admin.py).
import { PermissionDenied, ProtocolError, pyRepr } from '../errors.js';

const ASCII_LETTERS_DIGITS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
export const POOL_NAME_CHARS = ASCII_LETTERS_DIGITS + '-_.';
export const REVISION_CHARS = ASCII_LETTERS_DIGITS + ':-_.';

/** Qubes' enforce_arg: PermissionDenied "Argument not in '<what>'". */
export function enforceArg(arg: string, wants: readonly string[], shortReason: string): void {
  if (!wants.includes(arg)) throw PermissionDenied(`Argument not in ${pyRepr(shortReason)}`);
}

export function enforce(predicate: boolean, reason: string): void {
  if (!predicate) throw ProtocolError(reason);
}

export function allIn(s: string, allowed: string): boolean {
  for (const ch of s) if (!allowed.includes(ch)) return false;
  return true;
}

/** Strict 7-bit decode; `reason` is the ProtocolError message on failure. */
export function ascii(b: Buffer, reason: string): string {
  for (const byte of b) if (byte > 0x7f) throw ProtocolError(reason);
  return b.toString('latin1');
}

/** Python's bytes.strip() (ASCII whitespace). */
export function stripBytes(b: Buffer): Buffer {
  const ws = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d);
  let s = 0;
  let e = b.length;
  while (s < e && ws(b[s]!)) s++;
  while (e > s && ws(b[e - 1]!)) e--;
  return b.subarray(s, e);
}

/** Qubes' validate_number: ASCII digits, at most 19 of them, no leading zeros. */
export function validateNumber(untrusted: Buffer, name: string, allowNegative = false): number {
  let b = untrusted;
  let sign = 1;
  if (allowNegative && b.length > 0 && b[0] === 0x2d) {
    sign = -1;
    b = b.subarray(1);
  }
  const cap = name.charAt(0).toUpperCase() + name.slice(1).toLowerCase();
  if (b.length === 0 || ![...b].every((c) => c >= 0x30 && c <= 0x39)) throw ProtocolError(`${cap} contains non ASCII digits`);
  if (b.length >= 20) throw ProtocolError(`${cap} is bigger than 19 decimal digits`);
  if (b[0] === 0x30 && b.length > 1) throw ProtocolError(`${cap} contains spurious leading zeros`);
  const n = Number(b.toString('latin1'));
  if (!Number.isSafeInteger(n)) throw ProtocolError(`${cap} is too big`);
  return sign * n;
}

/** qubes.property.bool on an ASCII payload; anything else is "Payload is not boolean ASCII". */
export function parseBoolPayload(payload: Buffer): boolean {
  const s = ascii(payload, 'Payload is not boolean ASCII').toLowerCase();
  if (['0', 'no', 'false', 'off'].includes(s)) return false;
  if (['1', 'yes', 'true', 'on'].includes(s)) return true;
  throw ProtocolError('Payload is not boolean ASCII');
}

/** Python's str.splitlines() for ASCII text. */
export function splitLines(s: string): string[] {
  const parts = s.split(/\r\n|[\n\r\v\f\x1c\x1d\x1e]/);
  if (parts.length && parts[parts.length - 1] === '') parts.pop();
  return parts;
}
