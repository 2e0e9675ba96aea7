// The recorded answers of the real Qubes qubesd (../shared/conformance/qubesd),
// replayed against our daemon started from the same fixture. Every call must
// match (--lenient: where Qubes dropped the connection on an unhandled error,
// we answer with an EXCEPTION frame instead, as the issue asks).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SHARED, cleanup, startDaemon } from '../helpers/qubesd.js';

const replay = join(SHARED, 'conformance', 'qubesd', 'replay.py');

t.test('Admin API conformance replay', { skip: existsSync(replay) ? false : `no conformance data at ${replay}` }, async (t) => {
  const d = await startDaemon();
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const r = spawnSync('python3', [replay, d.socket, '--lenient', '--base', d.base, '--show', '30'], { encoding: 'utf8', timeout: 300000 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  const m = /^(\d+) passed, (\d+) failed$/.exec(last);
  t.ok(m, `replay printed a summary (got: ${last} ${r.stderr})`);
  if (!m) return;
  t.ok(Number(m[1]) > 600, `replayed the whole recording (${m[1]} calls matched)`);
  t.equal(Number(m[2]), 0, 'no call differs from the real qubesd', { diff: r.stdout.slice(r.stdout.indexOf('== first')) });
});
