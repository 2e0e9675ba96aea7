// A seeded random source for the soak, so that a run can be replayed with
// --seed (the timing of a live daemon still differs between runs), and the
// hostile inputs every generator mixes in.

/** mulberry32: small, fast, good enough to pick inputs. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** A length skewed towards small values, sometimes up to `max`. */
  length(max: number): number {
    const r = this.next();
    if (r < 0.6) return this.int(16);
    if (r < 0.9) return this.int(512);
    return this.int(max + 1);
  }
}

/** Strings that must never get a name past a validator, or a byte into a frame. */
export const HOSTILE = [
  '',
  '.',
  '..',
  '/',
  '../',
  '../../etc/passwd',
  'a/b',
  '-',
  '-h',
  '--help',
  '\0',
  'a\0b',
  ' ',
  'a b',
  '\n',
  'a\nb',
  '\t',
  '\\',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'dom0/..',
  'Domain-0',
  'none',
  'default',
  'x'.repeat(32),
  'x'.repeat(251),
  'x'.repeat(300),
  '\u00e9',
  '\ud800',
  '\u202e',
  '%2f',
  '*',
  '$tag:x',
  '@anyvm',
  'uuid:',
  'uuid:zzzz',
  'uuid:00000000-0000-0000-0000-000000000000',
  '0',
  '-1',
  '99999999999999999999',
  'x.conf',
  'x.policy',
  '.hidden',
  'a-dm',
];

/** Bytes that are not valid UTF-8, and other byte-level oddities. */
export const ODD_BYTES: readonly Buffer[] = [
  Buffer.from([0xff]),
  Buffer.from([0xc3]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]),
  Buffer.from([0x00]),
  Buffer.from([0x00, 0x00]),
  Buffer.from([0x80]),
  Buffer.from([0x7f]),
  Buffer.from([0x1b, 0x5b, 0x32, 0x4a]),
];

/** A hostile string, a valid-looking one with a hostile piece spliced in, or random bytes as latin1. */
export function hostileName(rng: Rng, valid: readonly string[]): string {
  const r = rng.next();
  if (r < 0.35) return rng.pick(HOSTILE);
  if (r < 0.75) {
    const v = rng.pick(valid);
    const at = rng.int(v.length + 1);
    return v.slice(0, at) + rng.pick(HOSTILE) + v.slice(at);
  }
  return rng.bytes(rng.length(40)).toString('latin1');
}

/** A payload: random bytes, odd bytes spliced into text, or a big one (up to 64 KiB and a bit). */
export function randomPayload(rng: Rng, text: readonly string[]): Buffer {
  const r = rng.next();
  if (r < 0.3) return rng.bytes(rng.length(256));
  if (r < 0.7) {
    const t = Buffer.from(rng.pick(text));
    const at = rng.int(t.length + 1);
    return Buffer.concat([t.subarray(0, at), rng.pick(ODD_BYTES), t.subarray(at)]);
  }
  if (r < 0.95) return Buffer.from(rng.pick(text));
  // large: around the 64 KiB request limit, on either side of it
  return rng.bytes(65536 - 200 + rng.int(400));
}
