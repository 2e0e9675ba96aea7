// qubesd throughput through its real socket, each figure beside the floor of
// this machine measured in the same run, and its ratio to that floor.
//
// The load comes from the conformance C load generator (qload.c: one
// connection per call, like the Qubes client), so the client is not the
// bottleneck. The floors:
//  - floor: ../shared/conformance/tools/floor-server.mjs, a trivial Node
//    server answering a fixed frame, run as its own process (a floor inside
//    this process would be slowed by the benchmark and flatter the ratio);
//  - durable floor: that floor's round trip plus one append and fdatasync of
//    a journal-sized record on the store's disk (fsync-floor.c), i.e.
//    1 / (1/F + ms_each/1000) calls/s;
//  - same-bytes floor: the floor server answering the very bytes of qubesd's
//    admin.vm.List reply (REPLY_FILE), for vm.List;
//  - measured durable floor: bench/durable-floor-server.ts, the floor server
//    making a journal-sized record durable before each answer, as its own
//    process (feature.Set with 1 client is also reported beside it: the
//    computed durable floor leaves out what waiting on the disk costs in
//    wake-ups, which no server escapes; that file says more).
// The machine is shared and noisy: every measure is taken ROUNDS times,
// alternating floor and qubesd, and the ratio is the median of the paired
// ratios. Each qubesd figure also carries the CPU time per call of qubesd
// and of its floor (cpu_vs_*: floor's over ours), which the machine's other
// work disturbs much less than calls/s. Figures: property.Get on 12 and 1000 qubes, feature.Set with 1 and
// 16 clients, vm.List on 1000 qubes, qubesd's resident memory with 1000
// qubes; qvm-ls on 1000 qubes when a qubesadmin checkout is given
// (QUBES_CORE_ADMIN_CLIENT). BENCH_QUICK=1: fewer calls, one round;
// BENCH_ROUNDS=n: n rounds.
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { cpuMs } from './proc-cpu.js';
import { buildC, median, report, runJson, startProcess, stopProcess } from './common.js';
import { FIXTURE, SHARED, call, startDaemon, type Daemon } from '../test/helpers/qubesd.js';
import { QUBESD_NODE_FLAGS } from '../lib/node-flags.js';

const TOOLS = join(SHARED, 'conformance', 'tools');
const quick = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS) || (quick ? 1 : 5);
const READS = quick ? 3000 : 15000;
const WRITES = quick ? 1000 : 4000;
const LISTS = quick ? 500 : 2000;
const WARMUP = quick ? 500 : 4000;

const work = mkdtempSync(join(tmpdir(), 'qubesd-bench-'));
const QLOAD = join(work, 'qload');
const DURABLE_FLOOR_SERVER = fileURLToPath(new URL('./durable-floor-server.js', import.meta.url));
const FSYNC_FLOOR = join(work, 'fsync-floor');

interface Load {
  calls_per_s: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
}
/** A load's result, with the server's CPU time per call when its pid is known. */
interface Measured {
  calls_per_s: number;
  cpu_us?: number;
  p50_ms?: number;
  p99_ms?: number;
  errors?: number;
}

/**
 * Loads a server and measures its CPU time per call: less sensitive than
 * calls/s to what else runs on a shared machine.
 */
function measure(pid: number, socket: string, threads: number, c: Case): Measured {
  const t0 = cpuMs(pid);
  const r = qload(socket, threads, c);
  return { ...r, cpu_us: ((cpuMs(pid) - t0) * 1000) / c.calls };
}
interface Case {
  method: string;
  dest: string;
  arg?: string;
  payload?: string;
  calls: number;
}

function qload(socket: string, threads: number, c: Case): Load {
  const args = [socket, String(threads), String(c.calls), c.method, c.dest];
  if (c.arg || c.payload) args.push(c.arg ?? '');
  if (c.payload) args.push(c.payload);
  return runJson<Load>(QLOAD, args);
}

/** ms for one append + fdatasync of a journal-sized record in `dir`. */
function fsyncMs(dir: string): number {
  return runJson<{ ms_each: number }>(FSYNC_FLOOR, [dir, quick ? '1000' : '3000', '150']).ms_each;
}

const durableFloor = (floorPerS: number, msEach: number) => 1 / (1 / floorPerS + msEach / 1000);

/**
 * Measures `ours` beside `floor` ROUNDS times, alternating which goes first,
 * and reports the medians and the median of the paired ratios.
 */
function paired(fig: Record<string, unknown> & { name: string }, floor: () => Measured, ours: () => Measured, floorName: string): void {
  const f: number[] = [],
    o: number[] = [],
    ratio: number[] = [],
    p50: number[] = [],
    p99: number[] = [];
  const cpu: number[] = [],
    floorCpu: number[] = [],
    cpuRatio: number[] = [];
  let errors = 0;
  for (let r = 0; r < ROUNDS; r++) {
    let fr: Measured, or: Measured;
    if (r % 2 === 0) {
      fr = floor();
      or = ours();
    } else {
      or = ours();
      fr = floor();
    }
    f.push(fr.calls_per_s);
    o.push(or.calls_per_s);
    ratio.push(or.calls_per_s / fr.calls_per_s);
    p50.push(or.p50_ms ?? NaN);
    p99.push(or.p99_ms ?? NaN);
    errors += or.errors ?? 0;
    if (or.cpu_us !== undefined) cpu.push(or.cpu_us);
    if (or.cpu_us !== undefined && fr.cpu_us !== undefined) {
      floorCpu.push(fr.cpu_us);
      cpuRatio.push(fr.cpu_us / or.cpu_us);
    }
  }
  report({
    bench: 'qubesd',
    ...fig,
    value: Math.round(median(o)),
    unit: 'calls/s',
    [floorName]: Math.round(median(f)),
    ['vs_' + floorName]: +median(ratio).toFixed(3),
    p50_ms: median(p50),
    p99_ms: median(p99),
    errors,
    ...(cpu.length ? { cpu_us_per_call: Math.round(median(cpu)) } : {}),
    // the floor's CPU time per call over ours: 1 means as cheap as the floor
    ...(cpuRatio.length ? { ['cpu_us_per_call_' + floorName]: Math.round(median(floorCpu)), ['cpu_vs_' + floorName]: +median(cpuRatio).toFixed(3) } : {}),
  });
}

/** A store with `n` qubes: the conformance fixture (12 qubes) plus AppVMs on its template. */
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

function floorServer(socket: string, replyFile?: string): Promise<ChildProcess> {
  return startProcess([join(TOOLS, 'floor-server.mjs'), socket, ...(replyFile ? [replyFile] : [])], 'ready');
}

async function main(): Promise<void> {
  if (!existsSync(join(TOOLS, 'floor-server.mjs'))) {
    report({
      bench: 'qubesd',
      name: 'skipped',
      value: 0,
      unit: 'none',
      reason: `no floor server at ${join(TOOLS, 'floor-server.mjs')} (../shared/conformance/tools beside the repository)`,
    });
    return;
  }
  if (!buildC(join(TOOLS, 'qload.c'), QLOAD, ['-pthread']) || !buildC(join(TOOLS, 'fsync-floor.c'), FSYNC_FLOOR)) {
    report({ bench: 'qubesd', name: 'skipped', value: 0, unit: 'none', reason: 'cannot compile qload.c / fsync-floor.c with cc' });
    return;
  }
  report({ bench: 'qubesd', name: 'node-flags', value: 0, unit: 'none', flags: QUBESD_NODE_FLAGS.join(' ') });

  const floorSock = join(work, 'floor.sock');
  const floor = await floorServer(floorSock);
  try {
    const get: Case = { method: 'admin.vm.property.Get', dest: 'personal', arg: 'netvm', calls: READS };
    const floorCalls = (threads: number, calls: number) => qload(floorSock, threads, { ...get, calls }).calls_per_s;
    const floorMeasured = (threads: number) => measure(floor.pid!, floorSock, threads, get);
    qload(floorSock, 1, { ...get, calls: 2000 }); // warm-up (JIT)
    for (const threads of [1, 16]) {
      const r = qload(floorSock, threads, get);
      report({ bench: 'qubesd', name: 'floor', threads, value: Math.round(r.calls_per_s), unit: 'calls/s', p50_ms: r.p50_ms, p99_ms: r.p99_ms });
    }

    for (const n of [12, 1000]) {
      const dir = join(work, `store-${n}`);
      execFileSync('mkdir', ['-p', join(dir, 'base'), join(dir, 'run')]);
      syntheticStore(dir, n);
      const fsyncMsHere = () => fsyncMs(dir);
      if (n === 12) {
        const ms = [0, 1, 2].slice(0, ROUNDS).map(fsyncMsHere);
        report({ bench: 'qubesd', name: 'fsync-floor', value: median(ms), unit: 'ms', bytes: 150 });
        report({ bench: 'qubesd', name: 'durable-floor', threads: 1, value: Math.round(durableFloor(floorCalls(1, READS), median(ms))), unit: 'calls/s' });
      }
      let d: Daemon | null = null;
      try {
        // with its audit log in a file on the store's disk, as installed
        d = await startDaemon({ dir });
        const sock = d.socket,
          pid = d.proc.pid!;
        const set: Case = { method: 'admin.vm.feature.Set', dest: 'personal', arg: 'bench', payload: 'v1', calls: WRITES };
        const list: Case = { method: 'admin.vm.List', dest: 'dom0', calls: LISTS };
        // Warm-up (JIT, caches): otherwise whichever case runs first pays it.
        // Long enough for V8 to finish optimizing the call path: after 1000
        // calls its compiler threads still took a fifth of qubesd's samples
        // (perf, feature.Set), on the core qload needs, where a daemon that
        // has been up a while has long done compiling; after 8000, a twentieth.
        for (const c of [get, set, list]) qload(sock, 1, { ...c, calls: WARMUP });

        for (const threads of [1, 16]) {
          paired(
            { name: get.method, qubes: n, threads },
            () => floorMeasured(threads),
            () => measure(pid, sock, threads, get),
            'floor',
          );
        }
        for (const threads of [1, 16]) {
          // the durable floor is that of one client: with group commit, 16
          // clients may go past it
          paired(
            { name: set.method, qubes: n, threads },
            () => ({ calls_per_s: durableFloor(floorCalls(1, READS), fsyncMsHere()) }),
            () => measure(pid, sock, threads, set),
            'durable_floor',
          );
        }
        // the same, beside a durable floor measured end to end (a server
        // that makes each call's record durable before answering, as its own
        // process: bench/durable-floor-server.ts says what the computed one
        // leaves out); `dsync` makes qubesd's own kind of write
        const dsyncSock = join(work, 'durable-floor.sock');
        const dsync = await startProcess([DURABLE_FLOOR_SERVER, dsyncSock, dir, 'dsync'], 'ready');
        try {
          qload(dsyncSock, 1, { ...set, calls: WARMUP }); // warm-up, as qubesd had
          if (n === 12) {
            // what the computed floor stands for, measured: the append and fdatasync of fsync-floor.c
            const appendSock = join(work, 'append-floor.sock');
            const append = await startProcess([DURABLE_FLOOR_SERVER, appendSock, dir, 'append'], 'ready');
            try {
              qload(appendSock, 1, { ...set, calls: WARMUP });
              const measured: number[] = [],
                computed: number[] = [];
              for (let r = 0; r < ROUNDS; r++) {
                measured.push(qload(appendSock, 1, set).calls_per_s);
                computed.push(durableFloor(floorCalls(1, READS), fsyncMsHere()));
              }
              report({
                bench: 'qubesd',
                name: 'durable-floor-server',
                mode: 'append',
                threads: 1,
                value: Math.round(median(measured)),
                unit: 'calls/s',
                computed_durable_floor: Math.round(median(computed)),
                vs_computed: +(median(measured) / median(computed)).toFixed(3),
              });
            } finally {
              await stopProcess(append);
            }
          }
          paired(
            { name: set.method, qubes: n, threads: 1 },
            () => ({ calls_per_s: qload(dsyncSock, 1, set).calls_per_s }),
            () => measure(pid, sock, 1, set),
            'measured_durable_floor',
          );
        } finally {
          await stopProcess(dsync);
        }
        if (n === 1000) {
          const replyFile = join(work, 'vm-list.reply');
          const reply = (await call(sock, 'admin.vm.List', 'dom0')).raw;
          writeFileSync(replyFile, reply);
          const sameSock = join(work, 'floor-same.sock');
          const same = await floorServer(sameSock, replyFile);
          try {
            qload(sameSock, 1, { ...list, calls: WARMUP }); // warm-up, as qubesd had
            for (const threads of [1, 16]) {
              paired(
                { name: list.method, qubes: n, threads, reply_bytes: reply.length },
                () => measure(same.pid!, sameSock, threads, list),
                () => measure(pid, sock, threads, list),
                'same_bytes_floor',
              );
            }
          } finally {
            await stopProcess(same);
          }
          report({ bench: 'qubesd', name: 'rss', qubes: n, value: Math.round(rssKb(d.proc.pid!) / 1024), unit: 'MB' });
          qvmLs(sock, n);
        }
      } finally {
        if (d) await d.stop();
      }
    }
  } finally {
    await stopProcess(floor);
  }
}

function qvmLs(socket: string, n: number): void {
  const client = process.env.QUBES_CORE_ADMIN_CLIENT;
  if (!client || !existsSync(join(client, 'qubesadmin'))) {
    report({ bench: 'qubesd', name: 'qvm-ls', qubes: n, value: 0, unit: 's', skipped: 'set QUBES_CORE_ADMIN_CLIENT to a qubesadmin checkout' });
    return;
  }
  const t0 = performance.now();
  const r = spawnSync('python3', [join(TOOLS, 'qvm.py'), 'qvm-ls', '--raw-data'], { env: { ...process.env, QUBESD_SOCKET: socket }, encoding: 'utf8' });
  const s = (performance.now() - t0) / 1000;
  report({ bench: 'qubesd', name: 'qvm-ls', qubes: n, value: +s.toFixed(3), unit: 's', ok: r.status === 0, lines: r.stdout.split('\n').length - 1 });
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
