// Hypervisor layer figures, against the libvirtd that .ci/libvirt.sh starts:
//  - start-to-running and kill-to-halted of the tiny guest (64 MiB, 1 vcpu,
//    no disk, in its firmware) through our backend, through the bare RPC
//    (libvirt's own time, seen from the socket) and through virsh (baseline);
//    qubesd's overhead is measured apart, as the calls the backend makes
//    around the bare RPC (state check, redefinition), because QEMU's own start
//    time varies far more than they cost;
//  - latency of listing all domains, ours vs `virsh list --all`.
// Skips (exit 0, message on stderr) when no libvirtd answers.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { percentile, report } from './common.js';
import type { DomainSpec } from '../qubesd/hypervisor/domain-xml.js';
import { LibvirtBackend } from '../qubesd/hypervisor/libvirt-backend.js';

const BENCH = 'hypervisor';
const ROUNDS = 6;
const LIST_CALLS = 300;

async function reachable(path: string): Promise<boolean> {
  if (!existsSync(path)) return false;
  return new Promise((res) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );

async function main(): Promise<void> {
  const sock = process.env.QUBES_TEST_LIBVIRT_SOCK ?? '/tmp/qubes-libvirt/libvirt-sock';
  if (!(await reachable(sock))) {
    process.stderr.write(`bench ${BENCH}: libvirtd not reachable at ${sock} (run .ci/libvirt.sh); skipped\n`);
    return;
  }
  const uri = `qemu+unix:///system?socket=${sock}`;
  const b = new LibvirtBackend({ uri });
  await b.connect();
  const virsh = (...args: string[]) => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`virsh ${args.join(' ')}: ${r.stderr}`);
    return ms(t0);
  };
  const spec: DomainSpec = { name: `bench-${randomUUID().slice(0, 8)}`, uuid: randomUUID(), memoryMb: 64, vcpus: 1, virtMode: 'hvm', kernel: null };
  const dir = mkdtempSync(join(tmpdir(), 'hv-bench-'));
  const xmlFile = join(dir, 'domain.xml');
  writeFileSync(xmlFile, b.xmlFor(spec));
  const extra = { flavour: b.flavour, rounds: ROUNDS };
  try {
    const ours = { start: [] as number[], kill: [] as number[] };
    const rpc = { start: [] as number[], kill: [] as number[] };
    const vs = { start: [] as number[], kill: [] as number[] };
    virsh('define', xmlFile);
    for (let i = 0; i < ROUNDS; i++) {
      let t0 = process.hrtime.bigint();
      await b.start(spec);
      ours.start.push(ms(t0));
      if ((await b.state(spec.name)) !== 'Running') throw new Error('guest not running after start');
      t0 = process.hrtime.bigint();
      await b.destroy(spec.name);
      ours.kill.push(ms(t0));

      const d = await b.client.lookupByName(spec.name);
      t0 = process.hrtime.bigint();
      await b.client.create(d);
      rpc.start.push(ms(t0));
      t0 = process.hrtime.bigint();
      await b.client.destroy(d);
      rpc.kill.push(ms(t0));

      vs.start.push(virsh('start', spec.name));
      vs.kill.push(virsh('destroy', spec.name));
    }
    // What the backend adds: start = lookup + state + define + (create);
    // kill = lookup + state + (destroy). Timed on their own, many times.
    const xml = b.xmlFor(spec);
    const prepStart: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = process.hrtime.bigint();
      await b.client.lookupByName(spec.name);
      await b.state(spec.name);
      await b.client.defineXml(xml);
      prepStart.push(ms(t0));
    }
    await b.start(spec);
    const prepKill: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = process.hrtime.bigint();
      await b.client.getState(await b.client.lookupByName(spec.name));
      prepKill.push(ms(t0));
    }
    await b.destroy(spec.name);
    const overhead = { start: median(prepStart), kill: median(prepKill) };
    for (const op of ['start', 'kill'] as const) {
      const what = op === 'start' ? 'start-to-running' : 'kill-to-halted';
      const o = median(ours[op]),
        r = median(rpc[op]),
        v = median(vs[op]);
      report({ bench: BENCH, name: `${what}-qubesd-backend`, value: o, unit: 'ms', ...extra, virsh_ms: v, ratio_vs_virsh: o / v });
      report({ bench: BENCH, name: `${what}-libvirt-rpc`, value: r, unit: 'ms', ...extra });
      report({ bench: BENCH, name: `${what}-virsh-baseline`, value: v, unit: 'ms', ...extra });
      report({
        bench: BENCH,
        name: `${what}-qubesd-overhead`,
        value: overhead[op],
        unit: 'ms',
        ...extra,
        libvirt_rpc_ms: r,
        ratio_vs_libvirt: overhead[op] / r,
      });
    }

    const lat: number[] = [];
    for (let i = 0; i < LIST_CALLS; i++) {
      const t0 = process.hrtime.bigint();
      await b.client.listAllDomains();
      lat.push(ms(t0) * 1000);
    }
    lat.sort((x, y) => x - y);
    const vl: number[] = [];
    for (let i = 0; i < 20; i++) vl.push(virsh('list', '--all') * 1000);
    const vMed = median(vl);
    report({
      bench: BENCH,
      name: 'list-all-domains',
      value: percentile(lat, 50),
      unit: 'us',
      p99_us: percentile(lat, 99),
      calls: LIST_CALLS,
      virsh_us: vMed,
      ratio_vs_virsh: percentile(lat, 50) / vMed,
    });
    const bl: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t0 = process.hrtime.bigint();
      await b.list();
      bl.push(ms(t0) * 1000);
    }
    report({ bench: BENCH, name: 'backend-list-with-states', value: median(bl), unit: 'us', calls: 100 });
  } finally {
    if ((await b.state(spec.name)) !== 'Halted') await b.destroy(spec.name);
    if ((await b.list()).some((d) => d.name === spec.name)) await b.client.undefine(await b.client.lookupByName(spec.name));
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
