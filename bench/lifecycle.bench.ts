// Life cycle through qubesd's socket. Figures:
//  - admin.vm.List with 100 running qubes beside the same store with them
//    halted: the state comes from the model kept by hypervisor events, so
//    listing never asks the hypervisor per qube;
//  - with a libvirtd (QUBES_TEST_LIBVIRT_URI, as .ci/libvirt.sh starts it):
//    start-to-running and kill-to-halted of a tiny real QEMU guest through
//    qubesd, beside virsh doing the same to the same domain definition, so
//    qubesd's own overhead per lifecycle call is visible.
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { percentile, report } from './common.js';
import { BOOTS_WITHOUT_KERNEL, SHARED, call, startDaemon, type Daemon } from '../test/helpers/qubesd.js';

const work = mkdtempSync(join(tmpdir(), 'lifecycle-bench-'));
chmodSync(work, 0o755);
const QLOAD = join(work, 'qload');

async function ok(d: Daemon, method: string, dest: string, arg = '', payload = ''): Promise<string> {
  const r = await call(d.socket, method, dest, arg, payload);
  if (!r.ok) throw new Error(`${method} ${dest} ${arg}: ${r.type}: ${r.message}`);
  return r.content;
}

async function listWithRunning(): Promise<void> {
  if (spawnSync('cc', ['-O2', '-pthread', '-o', QLOAD, join(SHARED, 'conformance', 'tools', 'qload.c')]).status !== 0) {
    report({ bench: 'lifecycle', name: 'vm-list-running', value: 0, unit: 'none', skipped: 'cannot build qload' });
    return;
  }
  const d = await startDaemon({ dir: join(work, 'sim'), args: ['--log', 'none'] });
  try {
    const n = 100;
    for (let i = 0; i < n; i++) await ok(d, 'admin.vm.Create.StandaloneVM', 'dom0', '', `name=q${i} label=red`);
    const measure = async (label: string) => {
      const { stdout } = await promisify(execFile)(QLOAD, [d.socket, '4', '4000', 'admin.vm.List', 'dom0']);
      const r = JSON.parse(stdout) as { calls_per_s: number; p50_ms: number; p99_ms: number };
      report({
        bench: 'lifecycle',
        name: 'admin.vm.List',
        qubes: n + 1,
        running: label,
        value: r.calls_per_s,
        unit: 'calls/s',
        p50_ms: r.p50_ms,
        p99_ms: r.p99_ms,
      });
      return r.calls_per_s;
    };
    const halted = await measure('none');
    for (let i = 0; i < n; i++) await ok(d, 'admin.vm.Start', `q${i}`);
    const running = await measure(String(n));
    report({ bench: 'lifecycle', name: 'vm-list-running-vs-halted', value: +(running / halted).toFixed(3), unit: 'ratio' });
  } finally {
    await d.stop();
  }
}

async function tinyGuest(uri: string): Promise<void> {
  const d = await startDaemon({ dir: join(work, 'libvirt'), args: ['--log', 'none', '--backend', 'libvirt', '--libvirt-uri', uri] });
  const vm = `bench${process.pid % 10000}`;
  const rounds = 5;
  try {
    await ok(d, 'admin.vm.Create.StandaloneVM', 'dom0', '', `name=${vm} label=red`);
    for (const [p, v] of BOOTS_WITHOUT_KERNEL) await ok(d, 'admin.vm.property.Set', vm, p!, v!);
    const starts: number[] = [],
      kills: number[] = [],
      vStarts: number[] = [],
      vKills: number[] = [];
    const virsh = (...a: string[]) => {
      const t0 = performance.now();
      const r = spawnSync('virsh', ['-q', '-c', uri, ...a]);
      if (r.status !== 0) throw new Error(`virsh ${a.join(' ')}: ${r.stderr}`);
      return performance.now() - t0;
    };
    // The baseline: the domain as qubesd defines it, under another name and
    // without its volume files (qubesd prepares those at each start), driven
    // by libvirt's own client.
    await ok(d, 'admin.vm.Start', vm);
    const xml = spawnSync('virsh', ['-q', '-c', uri, 'dumpxml', '--inactive', vm], { encoding: 'utf8' })
      .stdout.replace(/<disk[\s\S]*?<\/disk>/g, '')
      .replace(/<uuid>[^<]*<\/uuid>/, '')
      .replace(`<name>${vm}</name>`, `<name>${vm}-virsh</name>`);
    await ok(d, 'admin.vm.Kill', vm);
    const xmlFile = join(work, 'baseline.xml');
    writeFileSync(xmlFile, xml);
    virsh('define', xmlFile);
    try {
      for (let i = 0; i < rounds; i++) {
        let t0 = performance.now();
        await ok(d, 'admin.vm.Start', vm);
        starts.push(performance.now() - t0);
        t0 = performance.now();
        await ok(d, 'admin.vm.Kill', vm);
        kills.push(performance.now() - t0);
        vStarts.push(virsh('start', `${vm}-virsh`));
        vKills.push(virsh('destroy', `${vm}-virsh`));
      }
    } finally {
      spawnSync('virsh', ['-q', '-c', uri, 'undefine', `${vm}-virsh`]);
    }
    const med = (a: number[]) =>
      +percentile(
        [...a].sort((x, y) => x - y),
        50,
      ).toFixed(1);
    report({
      bench: 'lifecycle',
      name: 'start-to-running',
      backend: 'libvirt',
      value: med(starts),
      unit: 'ms',
      virsh_ms: med(vStarts),
      overhead_ms: +(med(starts) - med(vStarts)).toFixed(1),
    });
    report({
      bench: 'lifecycle',
      name: 'kill-to-halted',
      backend: 'libvirt',
      value: med(kills),
      unit: 'ms',
      virsh_ms: med(vKills),
      overhead_ms: +(med(kills) - med(vKills)).toFixed(1),
    });
  } finally {
    await call(d.socket, 'admin.vm.Kill', vm);
    await call(d.socket, 'admin.vm.Remove', vm);
    await d.stop();
  }
}

try {
  await listWithRunning();
  const uri =
    process.env.QUBES_TEST_LIBVIRT_URI ?? (existsSync('/tmp/qubes-libvirt/libvirt-sock') ? 'qemu+unix:///system?socket=/tmp/qubes-libvirt/libvirt-sock' : null);
  if (uri) await tinyGuest(uri);
  else report({ bench: 'lifecycle', name: 'start-to-running', value: 0, unit: 'ms', skipped: 'no libvirtd (sh .ci/libvirt.sh)' });
} finally {
  rmSync(work, { recursive: true, force: true });
}
