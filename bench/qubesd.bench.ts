// qubesd throughput and latency through its real socket, measured with a C
// load generator (shared/conformance/tools/qload.c: one connection per call,
// like the Qubes client) so that the client is not the bottleneck. Beside it,
// the floor of this machine: a trivial Node server answering a fixed frame.
// Figures: calls/s, p50/p99 for admin.vm.List, property.Get, property.GetAll
// and feature.Set, 1 and 16 clients, stores of 10/100/1000 qubes; the
// daemon's resident memory with 1000 qubes; qvm-ls on 1000 qubes when a
// qubesadmin checkout is available (QUBES_CORE_ADMIN_CLIENT).
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { report } from './common.js';
import { FIXTURE, SHARED, call, startDaemon, type Daemon } from '../test/helpers/qubesd.js';

const work = mkdtempSync(join(tmpdir(), 'qubesd-bench-'));
const QLOAD = join(work, 'qload');
const quick = process.env.BENCH_QUICK === '1';

function buildQload(): boolean {
  const src = join(SHARED, 'conformance', 'tools', 'qload.c');
  if (!existsSync(src)) return false;
  const r = spawnSync('cc', ['-O2', '-pthread', '-o', QLOAD, src]);
  return r.status === 0;
}

interface Load { calls_per_s: number; p50_ms: number; p99_ms: number; errors: number }
// Asynchronous on purpose: the floor server lives in this process.
async function qload(socket: string, threads: number, calls: number, method: string, dest: string, arg = '', payload = ''): Promise<Load> {
  const args = [socket, String(threads), String(calls), method, dest];
  if (arg || payload) args.push(arg);
  if (payload) args.push(payload);
  const { stdout } = await promisify(execFile)(QLOAD, args, { encoding: 'utf8' });
  return JSON.parse(stdout) as Load;
}

/** A store with `n` qubes: the conformance fixture plus AppVMs on its template. */
function syntheticStore(dir: string, n: number): void {
  const base = join(dir, 'base');
  let xml = readFileSync(join(FIXTURE, 'qubes.xml'), 'utf8').replaceAll('@BASE@', base);
  const existing = (xml.match(/<domain /g) ?? []).length;
  let extra = '';
  for (let i = 0; i < Math.max(0, n - existing); i++) {
    const qid = 100 + i;
    extra += `    <domain id="domain-${qid}" class="AppVM">
      <properties>
        <property name="label">blue</property>
        <property name="name">bench-${i}</property>
        <property name="qid">${qid}</property>
        <property name="uuid">${randomUUID()}</property>
        <property name="template">fedora-41</property>
      </properties>
      <features>
        <feature name="bench">${i}</feature>
      </features>
      <tags>
        <tag name="created-by-dom0"/>
      </tags>
      <devices class="pci"/>
      <volume-config>
      </volume-config>
    </domain>
`;
  }
  xml = xml.replace('  </domains>', extra + '  </domains>');
  writeFileSync(join(dir, 'qubes.xml'), xml);
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function floorServer(path: string, reply?: Buffer): Promise<net.Server> {
  const frame = reply ?? Buffer.from('0\0dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\n');
  const s = net.createServer({ allowHalfOpen: true }, (c) => { c.on('data', () => {}); c.on('end', () => c.end(frame)); c.on('error', () => {}); });
  await new Promise<void>((r) => s.listen(path, r));
  return s;
}

async function main(): Promise<void> {
  if (!buildQload()) {
    report({ bench: 'qubesd', name: 'skipped', value: 0, unit: 'none', reason: 'cannot build qload (no cc or no shared/conformance)' });
    return;
  }
  const reads = quick ? 2000 : 20000;
  const writes = quick ? 500 : 4000;

  const floorPath = join(work, 'floor.sock');
  const floor = await floorServer(floorPath);
  const floors: Record<number, number> = {};
  for (const threads of [1, 16]) {
    const r = await qload(floorPath, threads, reads, 'admin.vm.List', 'dom0');
    floors[threads] = r.calls_per_s;
    report({ bench: 'qubesd', name: 'floor-trivial-node-server', threads, value: r.calls_per_s, unit: 'calls/s', p50_ms: r.p50_ms, p99_ms: r.p99_ms });
  }
  await new Promise((r) => floor.close(r));

  for (const n of quick ? [10, 1000] : [10, 100, 1000]) {
    const dir = join(work, `store-${n}`);
    execFileSync('mkdir', ['-p', join(dir, 'base'), join(dir, 'run')]);
    syntheticStore(dir, n);
    let d: Daemon | null = null;
    try {
      d = await startDaemon({ dir, args: ['--log', 'none'] });
      const cases: Array<[string, string, string, string, number]> = [
        ['admin.vm.List', 'dom0', '', '', n >= 1000 ? reads / 10 : reads],
        ['admin.vm.property.Get', 'personal', 'netvm', '', reads],
        ['admin.vm.property.GetAll', 'personal', '', '', reads / 4],
        ['admin.vm.feature.Set', 'personal', 'bench', 'v1', writes],
      ];
      // A floor that is fair to vm.List: the same trivial server answering
      // with the very bytes our list is (100 KB at 1000 qubes), precomputed.
      const listReply = (await call(d.socket, 'admin.vm.List', 'dom0')).raw;
      const sameSize: Record<number, number> = {};
      const floor2Path = join(work, `floor-${n}.sock`);
      const floor2 = await floorServer(floor2Path, listReply);
      for (const threads of [1, 16]) {
        const r = await qload(floor2Path, threads, n >= 1000 ? reads / 10 : reads, 'admin.vm.List', 'dom0');
        sameSize[threads] = r.calls_per_s;
        report({ bench: 'qubesd', name: 'floor-same-reply-as-vm.List', qubes: n, threads, value: r.calls_per_s, unit: 'calls/s', replyBytes: listReply.length });
      }
      await new Promise((r) => floor2.close(r));
      // Warm-up (JIT, caches): otherwise whichever case runs first pays it.
      for (const [method, dest, arg, payload] of cases) await qload(d.socket, 1, 500, method, dest, arg, payload);
      for (const [method, dest, arg, payload, calls] of cases) {
        for (const threads of [1, 16]) {
          const r = await qload(d.socket, threads, calls, method, dest, arg, payload);
          report({
            bench: 'qubesd', name: method, qubes: n, threads, value: r.calls_per_s, unit: 'calls/s',
            p50_ms: r.p50_ms, p99_ms: r.p99_ms, errors: r.errors, vs_floor: +(r.calls_per_s / floors[threads]!).toFixed(3),
            ...(method === 'admin.vm.List' ? { vs_same_reply_floor: +(r.calls_per_s / sameSize[threads]!).toFixed(3) } : {}),
          });
        }
      }
      if (n === 1000) {
        report({ bench: 'qubesd', name: 'rss', qubes: n, value: Math.round(rssKb(d.proc.pid!) / 1024), unit: 'MB' });
        const client = process.env.QUBES_CORE_ADMIN_CLIENT;
        if (client && existsSync(join(client, 'qubesadmin'))) {
          const t0 = performance.now();
          const r = spawnSync('python3', [join(SHARED, 'conformance', 'tools', 'qvm.py'), 'qvm-ls', '--raw-data'],
            { env: { ...process.env, QUBESD_SOCKET: d.socket }, encoding: 'utf8' });
          const s = (performance.now() - t0) / 1000;
          report({ bench: 'qubesd', name: 'qvm-ls', qubes: n, value: +s.toFixed(3), unit: 's', ok: r.status === 0, lines: r.stdout.split('\n').length - 1 });
        } else {
          report({ bench: 'qubesd', name: 'qvm-ls', qubes: n, value: 0, unit: 's', skipped: 'set QUBES_CORE_ADMIN_CLIENT to a qubesadmin checkout' });
        }
      }
    } finally {
      if (d) await d.stop();
    }
  }
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
