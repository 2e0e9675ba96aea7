// Shared settings of the property-based tests: how many runs, which seed,
// and one way to turn a fast-check result into a tap assertion that shows the
// counterexample and the seed to replay it with.
//   QUBES_FUZZ_SEED=<int>    replay a run (fast-check prints the seed on failure)
//   QUBES_FUZZ_RUNS=<factor> scale every property's run count (default 1)
import fc from 'fast-check';

const seedText = process.env.QUBES_FUZZ_SEED;
const factor = Number(process.env.QUBES_FUZZ_RUNS ?? '1') || 1;

export function runs(n: number): fc.Parameters<unknown> {
  return { numRuns: Math.max(1, Math.round(n * factor)), ...(seedText ? { seed: Number(seedText) } : {}) };
}

interface Assert {
  ok(v: unknown, msg: string, extra: { todo?: string }): unknown;
}

/**
 * Check a property; one tap assertion, with fast-check's report when it
 * fails. `todo` (a known finding fixed elsewhere) still runs the property and
 * shows the counterexample, without failing the suite.
 */
export async function holds<T>(t: Assert, name: string, prop: fc.IProperty<T> | fc.IAsyncProperty<T>, n = 300, todo?: string): Promise<void> {
  const out = await fc.check(prop as fc.IAsyncProperty<T>, runs(n) as fc.Parameters<T>);
  t.ok(!out.failed, out.failed ? `${name}\n${fc.defaultReportMessage(out)}` : name, todo ? { todo } : {});
}

/** Pieces of names that must never get past a validator whose names become paths or argv. */
export const HOSTILE_PIECES = [
  '/',
  '..',
  '.',
  '\0',
  '\n',
  ' ',
  '-',
  '--',
  '\\',
  '%2f',
  '\u2215',
  '\u0000/',
  '../',
  '/..',
  '~',
  '*',
  '$',
  ':',
  '+',
  '@',
  '\u00e9',
  '\ud800',
  '\x7f',
] as const;

/** Names close to valid ones with hostile pieces mixed in, plus plain hostile constants and random text. */
export function nameLike(valid: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const piece = fc.constantFrom(...HOSTILE_PIECES);
  const spliced = fc.tuple(valid, piece, fc.nat()).map(([v, p, at]) => {
    const i = v.length ? at % (v.length + 1) : 0;
    return v.slice(0, i) + p + v.slice(i);
  });
  const prefixed = fc.tuple(piece, valid).map(([p, v]) => p + v);
  const constants = fc.constantFrom(
    '',
    '.',
    '..',
    '/',
    '-',
    '-h',
    '--help',
    '../etc',
    'a/../b',
    'a\0b',
    '\0',
    'x'.repeat(256),
    '__proto__',
    'constructor',
    'dom0/..',
    '/etc/passwd',
    'a\nb',
    ' a',
    'a ',
    '\u202ea',
    '.hidden',
    'x.conf',
    'x.policy',
  );
  return fc.oneof(spliced, prefixed, constants, fc.string({ unit: 'binary', maxLength: 40 }), valid);
}

/** Names made only of the characters a validator's charset allows (to make acceptance likely too). */
export function fromChars(chars: string, maxLength = 40): fc.Arbitrary<string> {
  return fc.string({ unit: fc.constantFrom(...chars.split('')), minLength: 0, maxLength });
}
