// The REST gateway against qubesd's own socket: autocannon (a real HTTP load
// generator, in its own process) on GET /vms?fields=name_label,power_state
// and on ?fields=name_label,power_state,memory (which needs every qube's
// properties), on 10, 100 and 1000 qubes, with 1 and 16 clients; beside it,
// the same data fetched straight from qubesd's socket in another process
// (bench/rest-direct.ts: admin.vm.List, and admin.vm.List + GetAll of every
// qube). `cost_ratio` is direct ops/s over REST requests/s: 1 means the
// gateway costs nothing, the target is <= 2 at 1000 qubes. On a loaded
// machine throughput depends on what else runs, so the CPU time each side
// spends per request is reported too (the gateway and qubesd, against the
// direct client and qubesd; the load generator is not counted):
// `cpu_cost_ratio` is the first over the second. The machine is shared and
// noisy, one client's figure most of all (it is a chain of wake-ups through
// three processes): each figure is taken ROUNDS times, REST and direct in
// turn, and reported as the medians, with the median of the paired ratios
// and their range. BENCH_QUICK=1: one round of 1 s; BENCH_ROUNDS=n: n rounds.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { median, report, startRestBenchStack } from './common.js';
import { call } from '../lib/qubesd-client.js';
import { ROOT } from '../test/helpers/qubesd.js';

const execFileP = promisify(execFile);
const quick = process.env.BENCH_QUICK === '1';
const SECONDS = quick ? 1 : 3;
const ROUNDS = Number(process.env.BENCH_ROUNDS) || (quick ? 1 : 3);

/** CPU time (ms) a process has used so far. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/**
 * For SECONDS, or until `amount` requests are answered: a request that needs
 * every qube's properties takes seconds with 16 clients on 1000 qubes, and in
 * a fixed 3 s none would finish (nothing measured).
 */
async function autocannon(
  url: string,
  token: string,
  connections: number,
  amount?: number,
): Promise<{ rps: number; requests: number; p50: number; p99: number; errors: number }> {
  const { stdout } = await execFileP(
    process.execPath,
    [
      join(ROOT, 'node_modules', 'autocannon', 'autocannon.js'),
      '-j',
      '-c',
      String(connections),
      ...(amount ? ['-a', String(amount), '-t', '600'] : ['-d', String(SECONDS)]),
      '-H',
      `authorization=Bearer ${token}`,
      url,
    ],
    { maxBuffer: 1 << 24 },
  );
  const r = JSON.parse(stdout) as {
    requests: { average: number; total: number };
    latency: { p50: number; p99: number };
    non2xx: number;
    errors: number;
    duration: number;
  };
  return { rps: r.requests.total / r.duration, requests: r.requests.total, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx };
}

async function direct(
  socket: string,
  mode: string,
  concurrency: number,
  qubesdPid: number,
): Promise<{ ops_per_s: number; ops: number; cpu_ms: number; server_cpu_ms: number }> {
  const { stdout } = await execFileP(process.execPath, [
    join(ROOT, 'dist', 'bench', 'rest-direct.js'),
    socket,
    mode,
    String(concurrency),
    String(SECONDS),
    String(qubesdPid),
  ]);
  return JSON.parse(stdout) as { ops_per_s: number; ops: number; cpu_ms: number; server_cpu_ms: number };
}

/** One round of a figure: REST and direct, each with CPU ms per request. */
interface Round {
  rest: Awaited<ReturnType<typeof autocannon>>;
  restCpu: number;
  base: Awaited<ReturnType<typeof direct>>;
  directCpu: number;
}

async function main(): Promise<void> {
  for (const n of quick ? [10, 1000] : [10, 100, 1000]) {
    const gw = await startRestBenchStack('rest-bench');
    const { stack, token } = gw;
    try {
      const socket = stack.config.qubesd.socket;
      await call(socket, { method: 'admin.vm.Create.TemplateVM', dest: 'dom0', payload: 'name=tpl label=black' });
      const limit = pLimit(8);
      // dom0 and the template count: n qubes in all
      await Promise.all(
        Array.from({ length: n - 2 }, (_, i) =>
          limit(() => call(socket, { method: 'admin.vm.Create.AppVM', dest: 'dom0', arg: 'tpl', payload: `name=q${i} label=blue` })),
        ),
      );
      for (const [fields, mode] of [
        ['name_label,power_state', 'list'],
        ['name_label,power_state,memory', 'list+getall'],
      ] as const) {
        const url = `${gw.url}/vms?fields=${fields}`;
        const warm = await autocannon(url, token, 1);
        // what SECONDS at the warm-up's rate gives, and at least two requests per client
        const amount = (clients: number): number => Math.max(clients * 2, Math.round(warm.rps * SECONDS));
        const qubesdPid = stack.parts.find((p) => p.name === 'qubesd')!.proc.pid!;
        const r2 = (x: number) => Math.round(x * 100) / 100;
        for (const clients of [1, 16]) {
          const rounds: Round[] = [];
          const measureRest = async () => {
            const g0 = cpuMs(gw.gateway.pid!),
              q0 = cpuMs(qubesdPid);
            const rest = await autocannon(url, token, clients, mode === 'list' ? undefined : amount(clients));
            return { rest, restCpu: (cpuMs(gw.gateway.pid!) - g0 + cpuMs(qubesdPid) - q0) / rest.requests };
          };
          // qubesd's CPU over the direct client's measured window only (not its start nor warm-up)
          const measureDirect = async () => {
            const base = await direct(socket, mode, clients, qubesdPid);
            return { base, directCpu: (base.cpu_ms + base.server_cpu_ms) / base.ops };
          };
          for (let r = 0; r < ROUNDS; r++) {
            // in turn, which goes first alternating: a slow spell of the machine falls on both
            if (r % 2 === 0) {
              const a = await measureRest();
              rounds.push({ ...a, ...(await measureDirect()) });
            } else {
              const b = await measureDirect();
              rounds.push({ ...(await measureRest()), ...b });
            }
          }
          const ratios = rounds.map((x) => x.base.ops_per_s / x.rest.rps);
          const cpuRatios = rounds.map((x) => x.restCpu / x.directCpu);
          const med = (f: (x: Round) => number) => median(rounds.map(f));
          report({
            bench: 'rest',
            name: `GET /vms?fields=${fields}`,
            qubes: n,
            clients,
            value: Math.round(med((x) => x.rest.rps) * 10) / 10,
            unit: 'req/s',
            rounds: ROUNDS,
            p50_ms: med((x) => x.rest.p50),
            p99_ms: med((x) => x.rest.p99),
            errors: rounds.reduce((a, x) => a + x.rest.errors, 0),
            direct: mode,
            direct_ops_per_s: Math.round(med((x) => x.base.ops_per_s) * 10) / 10,
            cost_ratio: r2(median(ratios)),
            cost_ratio_range: [r2(Math.min(...ratios)), r2(Math.max(...ratios))],
            cpu_ms_per_req: r2(med((x) => x.restCpu)),
            direct_cpu_ms_per_op: r2(med((x) => x.directCpu)),
            cpu_cost_ratio: r2(median(cpuRatios)),
          });
        }
      }
    } finally {
      await gw.stop();
    }
  }
}

await main();
