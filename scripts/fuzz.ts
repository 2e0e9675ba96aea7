// npm run fuzz -- --seconds N [--seed S] [--workers W] [--keep]
// Soaks a live qubesd (with the policy daemon and the qrexec dispatcher) with
// random and mutated calls, misbehaving clients and event floods, restarts
// it after SIGKILL, and prints a one-line JSON summary. Exit status 1 when
// anything was found (examples of each kind go to standard error).
import { parseArgs } from 'node:util';
import { runSoak } from './fuzz/soak.js';

const USAGE =
  'usage: npm run fuzz -- --seconds N [--seed S] [--workers W] [--cycle-seconds C] [--kill-every K] [--max-rss-mb M] [--fd-slack F] [--silent-subscribers N] [--flood-events N] [--flood-value-kb K] [--keep] [--quiet]';

async function main(): Promise<number> {
  let v;
  try {
    ({ values: v } = parseArgs({
      options: {
        seconds: { type: 'string', default: '60' },
        seed: { type: 'string' },
        workers: { type: 'string', default: '6' },
        'cycle-seconds': { type: 'string', default: '10' },
        'kill-every': { type: 'string', default: '2' },
        'max-rss-mb': { type: 'string', default: '400' },
        'fd-slack': { type: 'string', default: '24' },
        'silent-subscribers': { type: 'string', default: '50' },
        'flood-events': { type: 'string', default: '200' },
        'flood-value-kb': { type: 'string', default: '32' },
        keep: { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (e) {
    console.error(`fuzz: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  const num = (name: string, text: string | undefined, min: number): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`);
    return n;
  };
  let opts;
  try {
    opts = {
      seconds: num('seconds', v.seconds, 1),
      seed: v.seed !== undefined ? num('seed', v.seed, 0) : Math.floor(Math.random() * 2 ** 31),
      workers: num('workers', v.workers, 1),
      cycleSeconds: num('cycle-seconds', v['cycle-seconds'], 2),
      killEvery: num('kill-every', v['kill-every'], 1),
      maxRssMB: num('max-rss-mb', v['max-rss-mb'], 1),
      fdSlack: num('fd-slack', v['fd-slack'], 0),
      silentSubscribers: num('silent-subscribers', v['silent-subscribers'], 0),
      floodEvents: num('flood-events', v['flood-events'], 0),
      floodValueKB: num('flood-value-kb', v['flood-value-kb'], 1),
      keep: v.keep!,
      log: v.quiet ? () => {} : (line: string) => console.error(`fuzz: ${line}`),
    };
  } catch (e) {
    console.error(`fuzz: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  opts.log(`seed ${opts.seed}, ${opts.seconds} s`);
  const { summary, examples } = await runSoak(opts);
  if (examples.size) {
    console.error('fuzz: examples of each finding:');
    for (const [kind, list] of examples) for (const e of list) console.error(`  [${kind}] ${e}`);
  }
  console.log(JSON.stringify(summary));
  return summary.findings > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`fuzz: ${(e as Error)?.stack ?? e}`);
    process.exit(2);
  },
);
