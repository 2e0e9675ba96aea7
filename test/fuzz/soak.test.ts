// CI's short soak: runs the fuzzer (dist/scripts/fuzz.js) against a live
// qubesd, policy daemon and qrexec dispatcher for QUBES_FUZZ_SECONDS
// (default 60) and fails when it finds anything: a crash, a hang, a
// malformed frame, Node's error text or an internal path in a reply,
// unbounded memory or descriptors, a lost write or a store that does not
// load after SIGKILL. QUBES_FUZZ_SEED replays a run's inputs.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/qubesd.js';

const seconds = Number(process.env.QUBES_FUZZ_SECONDS ?? '60');
const program = join(ROOT, 'dist', 'scripts', 'fuzz.js');

t.test(`soak of ${seconds} s finds nothing`, { timeout: (seconds + 180) * 1000 }, async (t) => {
  t.ok(existsSync(program), 'the fuzzer is built');
  const args = [program, '--seconds', String(seconds), ...(process.env.QUBES_FUZZ_SEED ? ['--seed', process.env.QUBES_FUZZ_SEED] : [])];
  // tap's loader hooks in NODE_OPTIONS must not reach the daemons the fuzzer starts
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '',
    stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  const line = stdout.trim().split('\n').at(-1) ?? '';
  t.comment(`fuzz summary: ${line}`);
  let summary: Record<string, unknown> | null = null;
  try {
    summary = JSON.parse(line) as Record<string, unknown>;
  } catch {
    /* reported below */
  }
  t.ok(summary, `the fuzzer printed its summary line${summary ? '' : `\n${stderr.slice(-4000)}`}`);
  if (!summary) return;
  t.ok((summary.requests as number) > 0, 'requests were sent');
  t.ok((summary.restarts as number) >= 1, 'qubesd was killed and restarted at least once');
  const findings = stderr
    .split('\n')
    .filter((l) => l.startsWith('  ['))
    .join('\n');
  t.equal(summary.findings, 0, `no findings${findings ? `:\n${findings}` : ''}`);
  t.equal(code, 0, 'the fuzzer exits 0');
});
