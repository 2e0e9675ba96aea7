// A runtime policy directory that does not exist is an empty one: bin/qubesd
// started with --policy-dir only (the runtime directory /run/qubes/policy.d
// missing, as on a host without Qubes' tmpfiles entry) must still load the
// policy and show a management qube the qubes it allows.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call } from '../helpers/qubesd.js';
import { BIN, spawnPlain } from '../rpc-services/helpers.js';
import { loadPolicy } from '../../policy/loader.js';

const dir = mkdtempSync(join(tmpdir(), 'policy-runtime-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const policyDir = join(dir, 'policy.d'),
  missing = join(dir, 'run', 'policy.d');
mkdirSync(policyDir);
writeFileSync(join(policyDir, '30-mgmt.policy'), 'admin.vm.List * mgmt vault allow target=dom0\n');

t.test('the loader reads a missing runtime directory as empty', async (t) => {
  t.notOk(existsSync(missing));
  t.equal(loadPolicy({ policyDir, runtimeDir: missing }).rules.length, 1);
  t.throws(
    () => loadPolicy({ policyDir: join(dir, 'no-such-policy.d'), runtimeDir: null }),
    /failed to load .*no-such-policy\.d/,
    'the main directory is still required',
  );
});

t.test('qubesd shows a management qube what the policy allows without a runtime directory', async (t) => {
  const run = join(dir, 'sockets'),
    base = join(dir, 'base'),
    log = join(dir, 'qubesd.log');
  mkdirSync(run);
  mkdirSync(base);
  const proc = spawnPlain(
    process.execPath,
    [
      join(BIN, 'qubesd'),
      '--store',
      join(dir, 'qubes.xml'),
      '--base-dir',
      base,
      '--socket-dir',
      run,
      '--policy-dir',
      policyDir,
      '--runtime-policy-dir',
      missing,
      '--log',
      log,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  t.teardown(async () => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await exited;
  });
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.once('data', () => resolve());
    proc.once('exit', (code) => reject(new Error(`qubesd exited (${code})`)));
  });
  const sock = join(run, 'qubesd.sock');
  for (const payload of ['name=tpl label=black']) t.ok((await call(sock, 'admin.vm.Create.TemplateVM', 'dom0', '', payload)).ok);
  for (const name of ['mgmt', 'vault', 'work']) t.ok((await call(sock, 'admin.vm.Create.AppVM', 'dom0', 'tpl', `name=${name} label=red`)).ok);
  const r = await call(sock, 'admin.vm.List', 'dom0', '', '', 'mgmt');
  t.match(r.content, /^vault class=AppVM state=Halted uuid=[0-9a-f-]{36}\n$/, 'vault, and only vault');
});
