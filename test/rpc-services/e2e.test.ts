// End to end, all real processes: qubes-install lays out a system under a
// temporary prefix, qubes-stack runs qubesd, the policy daemon and the
// qrexec dispatcher from it, and a management qube "mgmt" drives the Admin
// API through bin/qrexec-client-vm under a policy that lets it manage only
// the qubes tagged managed-by-mgmt (and those it creates itself).
import t from 'tap';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call, ROOT, type Reply } from '../helpers/qubesd.js';
import { install } from '../../rpc-services/install.js';
import { loadConfig } from '../../lib/stack-config.js';
import { exceptionOf, qrexecClient, spawnPlain, BIN } from './helpers.js';

const needed = ['dist/policy/daemon/server.js', 'dist/qubesd/cli.js', 'dist/rpc-services/qrexec/dispatcher-main.js'].filter((f) => !existsSync(join(ROOT, f)));
if (needed.length) {
  const msg = `END-TO-END TEST NOT RUN: parts not built yet: ${needed.join(', ')}`;
  console.error(`\n!!!!!!!! ${msg} !!!!!!!!\n`);
  t.test('end to end', { skip: msg }, () => {});
} else {
  await run();
}

async function run(): Promise<void> {
  const prefix = mkdtempSync(join(tmpdir(), 'rpc-e2e-'));
  install({ prefix });
  const c = loadConfig(join(prefix, 'etc', 'qubes', 'stack.json'));
  const grant = (service: string, target: string) => `${service.padEnd(24)} * mgmt ${target.padEnd(22)} allow target=dom0`;
  const managed = ['@tag:managed-by-mgmt', '@tag:created-by-mgmt'];
  writeFileSync(
    join(c.policy.dir, '30-mgmt.policy'),
    [
      '# mgmt manages the qubes tagged managed-by-mgmt and those it created',
      grant('admin.vm.List', '@adminvm'),
      grant('admin.vm.Create.AppVM', '@adminvm'),
      grant('admin.Events', '@adminvm'),
      ...[
        'admin.Events',
        'admin.vm.List',
        'admin.vm.property.Get',
        'admin.vm.property.Set',
        'admin.vm.tag.List',
        'admin.vm.tag.Get',
        'admin.vm.tag.Set',
        'admin.vm.tag.Remove',
      ].flatMap((s) => managed.map((m) => grant(s, m))),
      '',
    ].join('\n'),
  );

  const stack = spawnPlain(process.execPath, [join(BIN, 'qubes-stack'), '--prefix', prefix], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  stack.stdout!.on('data', (d) => {
    output += d;
  });
  stack.stderr!.on('data', (d) => {
    output += d;
  });
  const stackExit = new Promise<void>((r) => stack.once('exit', () => r()));
  // a test runner timeout must not leave the stack running
  process.once('exit', () => {
    if (stack.exitCode === null) stack.kill('SIGTERM');
  });
  t.teardown(async () => {
    if (stack.exitCode === null) stack.kill('SIGTERM');
    await stackExit;
    rmSync(prefix, { recursive: true, force: true });
  });
  const deadline = Date.now() + 30_000;
  while (!output.includes('qubes-stack: ready')) {
    if (stack.exitCode !== null || Date.now() > deadline) throw new Error(`the stack did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  // dom0 sets the scene directly on qubesd.sock
  const q = c.qubesd.socket;
  const dom0 = async (method: string, dest = 'dom0', arg = '', payload = ''): Promise<Reply> => {
    const r = await call(q, method, dest, arg, payload);
    if (!r.ok) throw new Error(`${method} ${dest} ${arg}: ${r.type} ${r.message}`);
    return r;
  };
  await dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  for (const [name, label] of [
    ['mgmt', 'red'],
    ['work', 'blue'],
    ['personal', 'yellow'],
    ['vault', 'black'],
  ]) {
    await dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', `name=${name} label=${label}`);
  }
  await dom0('admin.vm.tag.Set', 'work', 'managed-by-mgmt');
  await dom0('admin.vm.tag.Set', 'personal', 'managed-by-mgmt');

  const mgmtSocket = join(c.qrexec.socketDir, 'qrexec.mgmt');
  for (let i = 0; i < 200 && !existsSync(mgmtSocket); i++) await new Promise((r) => setTimeout(r, 25));
  const asMgmt = (target: string, service: string, input: string | Buffer = '') => qrexecClient(mgmtSocket, [target, service], input);
  const okContent = (r: { code: number | null; stdout: Buffer }) => {
    if (r.code !== 0 || r.stdout[0] !== 0x30) return null;
    return r.stdout.subarray(2).toString('utf8');
  };
  const tags = async (vm: string) => (await dom0('admin.vm.tag.List', vm)).content.split('\n').filter(Boolean).sort();

  /** everything a management qube could change, as dom0 sees it */
  const snapshot = async () => {
    const list = (await dom0('admin.vm.List')).content;
    const out = [list];
    for (const line of list.split('\n').filter(Boolean)) {
      const vm = line.split(' ')[0]!;
      out.push(vm, (await dom0('admin.vm.tag.List', vm)).content, (await dom0('admin.vm.property.Get', vm, 'label')).content);
    }
    return out.join('\n');
  };

  t.test("the installed entry prints qubesd's framed reply, as qrexec sees it", async (t) => {
    const entry = join(c.qrexec.serviceDir, 'admin.vm.List');
    const p = spawnPlain(entry, [], {
      env: { PATH: process.env.PATH, QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'dom0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks: Buffer[] = [];
    p.stdout!.on('data', (d) => chunks.push(d));
    const code = await new Promise((r) => p.once('close', r));
    t.equal(code, 0);
    t.same(Buffer.concat(chunks), (await call(q, 'admin.vm.List')).raw);
  });

  t.test('mgmt lists exactly the qubes it manages', async (t) => {
    const r = await asMgmt('dom0', 'admin.vm.List');
    const content = okContent(r);
    t.ok(content !== null, `listing allowed (${r.code} ${r.stderr})`);
    const names = content!
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ')[0])
      .filter((n) => n !== 'dom0')
      .sort();
    t.same(names, ['personal', 'work'], 'dom0 aside (the call itself is granted on it), only managed qubes');
  });

  t.test('events stream through qrexec to the caller, filtered for it', async (t) => {
    const p = spawnPlain(process.execPath, [join(BIN, 'qrexec-client-vm'), 'dom0', 'admin.Events'], {
      env: { ...process.env, QREXEC_SOCKET: mgmtSocket },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    p.stdin!.end();
    let seen = Buffer.alloc(0);
    p.stdout!.on('data', (d: Buffer) => {
      seen = Buffer.concat([seen, d]);
    });
    const got = async (needle: string) => {
      const deadline = Date.now() + 10_000;
      while (!seen.includes(needle)) {
        if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(needle)} in ${JSON.stringify(seen.toString('latin1'))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await got('connection-established');
    t.equal(seen[0], 0x31, 'event frames, as qubesd sends them');
    await dom0('admin.vm.feature.Set', 'vault', 'unseen', '1');
    await dom0('admin.vm.feature.Set', 'work', 'seen', '1');
    await got('\0work\0');
    t.notOk(seen.includes('\0vault\0'), 'nothing about qubes mgmt may not see');
    const closed = new Promise((r) => p.once('close', r));
    p.kill('SIGTERM');
    await closed;
    await dom0('admin.vm.feature.Remove', 'work', 'seen');
    await dom0('admin.vm.feature.Remove', 'vault', 'unseen');
  });

  t.test('mgmt reads and sets properties of its qubes', async (t) => {
    t.equal(okContent(await asMgmt('work', 'admin.vm.property.Get+label')), 'default=False type=label blue');
    const set = await asMgmt('work', 'admin.vm.property.Set+label', 'green');
    t.equal(okContent(set), '');
    t.equal((await dom0('admin.vm.property.Get', 'work', 'label')).content, 'default=False type=label green');
  });

  t.test('mgmt is refused on every other qube and every call it was not granted', async (t) => {
    const before = await snapshot();
    const refused: Array<[string, string, string]> = [
      ['vault', 'admin.vm.property.Get+label', ''],
      ['vault', 'admin.vm.property.Set+label', 'red'],
      ['vault', 'admin.vm.tag.Set+managed-by-mgmt', ''],
      ['mgmt', 'admin.vm.property.Get+label', ''],
      ['tpl', 'admin.vm.tag.List', ''],
      ['work', 'admin.vm.Remove', ''],
      ['work', 'admin.vm.feature.Set+x', '1'],
      ['work', 'admin.vm.Start', ''],
      ['dom0', 'admin.property.Set+default_template', 'tpl'],
      ['dom0', 'admin.label.Create+purple2', '0x123456'],
      ['dom0', 'admin.vm.Create.TemplateVM', 'name=evil label=red'],
      ['dom0', 'policy.Replace+30-mgmt', 'admin.vm.List * mgmt @anyvm allow target=dom0\n'],
    ];
    for (const [target, service, input] of refused) {
      const r = await asMgmt(target, service, input);
      t.equal(r.code, 126, `${service} on ${target}: refused`);
      t.equal(r.stderr, 'Request refused\n');
      t.equal(r.stdout.length, 0);
    }
    t.equal(await snapshot(), before, 'nothing changed');
  });

  t.test('mgmt creates a qube, which carries created-by-mgmt, and manages it', async (t) => {
    const r = await asMgmt('dom0', 'admin.vm.Create.AppVM+tpl', 'name=mgmt-made label=red');
    t.equal(okContent(r), '', `created (${r.stdout.toString('latin1')})`);
    t.ok((await tags('mgmt-made')).includes('created-by-mgmt'));
    t.equal(okContent(await asMgmt('mgmt-made', 'admin.vm.property.Get+label')), 'default=False type=label red');
    const listed = okContent(await asMgmt('dom0', 'admin.vm.List'))!;
    t.match(listed, /^mgmt-made /m, 'and now lists it');
  });

  t.test('mgmt can neither remove nor forge a created-by- tag', async (t) => {
    const rm = await asMgmt('mgmt-made', 'admin.vm.tag.Remove+created-by-mgmt');
    t.equal(exceptionOf(rm.stdout)?.type, 'PermissionDenied', 'removal refused by qubesd');
    t.ok((await tags('mgmt-made')).includes('created-by-mgmt'));
    const workTags = await tags('work');
    for (const forged of ['created-by-mgmt', 'created-by-vault']) {
      const f = await asMgmt('work', `admin.vm.tag.Set+${forged}`);
      t.equal(exceptionOf(f.stdout)?.type, 'PermissionDenied', `${forged} refused`);
    }
    t.same(await tags('work'), workTags, "work's tags unchanged");
    t.notOk(workTags.includes('created-by-mgmt'));
    const own = await asMgmt('work', 'admin.vm.tag.Set+mgmt-note');
    t.equal(okContent(own), '', 'ordinary tags are fine');
  });

  // the real Python client in its "running in a qube" mode, if a checkout is at hand
  const clientCheckout = process.env.QUBES_CORE_ADMIN_CLIENT ?? join(ROOT, '..', 'ref', 'qubes-core-admin-client');
  t.test(
    'qubesadmin in a qube drives the Admin API through policy',
    { skip: existsSync(join(clientCheckout, 'qubesadmin', 'app.py')) ? false : 'no qubesadmin checkout (set QUBES_CORE_ADMIN_CLIENT)' },
    async (t) => {
      const script = [
        'import sys',
        `sys.path.insert(0, ${JSON.stringify(clientCheckout)})`,
        'import qubesadmin.config, qubesadmin.app',
        `qubesadmin.config.QREXEC_CLIENT_VM = ${JSON.stringify(join(BIN, 'qrexec-client-vm'))}`,
        'app = qubesadmin.app.QubesRemote()',
        'print(" ".join(sorted(vm.name for vm in app.domains if vm.name != "dom0")))',
        'print(app.domains["personal"].label.name)',
        'app.domains["personal"].label = "purple"',
        'print("vault" in app.domains)',
      ].join('\n');
      const p = spawnPlain('python3', ['-c', script], { env: { ...process.env, QREXEC_SOCKET: mgmtSocket }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '',
        err = '';
      p.stdout!.on('data', (d) => {
        out += d;
      });
      p.stderr!.on('data', (d) => {
        err += d;
      });
      const code = await new Promise((r) => p.once('close', r));
      t.equal(code, 0, err);
      t.same(out.trim().split('\n'), ['mgmt-made personal work', 'yellow', 'False']);
      t.equal((await dom0('admin.vm.property.Get', 'personal', 'label')).content, 'default=False type=label purple');
    },
  );

  t.test('bad input through the dispatcher: clean refusals, no change', async (t) => {
    const before = await snapshot();
    const unknown = await asMgmt('dom0', 'admin.vm.Frobnicate');
    t.equal(unknown.code, 126, 'unknown service refused');
    const badChars = await asMgmt('work', 'admin.vm.property.Get+la$bel');
    t.equal(badChars.code, 126, 'bad argument characters refused');
    const badTarget = await asMgmt('work;rm', 'admin.vm.property.Get+label');
    t.equal(badTarget.code, 126, 'bad target refused');
    const big = await asMgmt('work', 'admin.vm.property.Set+label', Buffer.alloc(70_000, 0x61));
    t.not(big.code, 0, 'oversized payload fails');
    t.equal(exceptionOf(big.stdout)?.type, 'ProtocolError', "with the Admin API's exception frame");

    // a caller that goes away before sending its payload
    const p = spawnPlain(process.execPath, [join(BIN, 'qrexec-client-vm'), 'work', 'admin.vm.property.Set+label'], {
      env: { ...process.env, QREXEC_SOCKET: mgmtSocket },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    p.stdin!.write('pur');
    await new Promise((r) => setTimeout(r, 300));
    p.kill('SIGKILL');
    await new Promise((r) => p.once('close', r));

    t.equal(await snapshot(), before, 'the store is unchanged');
    t.equal(okContent(await asMgmt('work', 'admin.vm.property.Get+label')), 'default=False type=label green', 'and the dispatcher still serves');
  });
}
