// The REST gateway against qubesd's own socket: autocannon (a real HTTP load
// generator, in its own process: bench/http-load.ts) on GET /vms?fields=name_label,power_state
// and on ?fields=name_label,power_state,memory (which needs every qube's
// properties), on 10, 100 and 1000 qubes, with 1 and 16 clients; beside it,
// the same data fetched straight from qubesd's socket in another process
// (bench/rest-direct.ts: admin.vm.List, and admin.vm.List + GetAll of every
// qube). The gateway runs as installed, its access log in a file.
// `cost_ratio` is direct ops/s over REST requests/s: 1 means the
// gateway costs nothing, the target is <= 2 at 1000 qubes. On a loaded
// machine throughput depends on what else runs, so the CPU time each side
// spends per request is reported too (the gateway and qubesd, against the
// direct client and qubesd; the load generator is not counted):
// `cpu_cost_ratio` is the first over the second. Beside both, the floor
// gateway (bench/rest-floor-gateway.ts: node:http making the same calls and
// answering the gateway's own bytes, nothing else) under the same load:
// `vs_floor_gateway` is its requests/s over the gateway's, 1 meaning the
// gateway costs no more than the least a gateway in its place could. The
// machine is shared and noisy, one client's figure most of all (it is a
// chain of wake-ups through three processes): each figure is taken ROUNDS (5)
// times, REST, direct and the floor gateway in turn, and reported as the
// medians, with the median of the paired ratios and their range. Every side
// is measured alike: its client process warms up for a second, then measures
// while the load goes on, with only the measured run's CPU counted.
// BENCH_QUICK=1: one round of 1 s; BENCH_ROUNDS=n: n rounds; BENCH_QUBES=1000
// (a comma list) and BENCH_REST_FIELDS=list (or list+getall) measure only those.
import { execFile, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { median, report, startProcessMatching, startRestBenchStack, stopProcess } from './common.js';
import { call } from '../lib/qubesd-client.js';
import { ROOT } from '../test/helpers/qubesd.js';
import { REST_NODE_FLAGS } from '../lib/node-flags.js';

const execFileP = promisify(execFile);
const quick = process.env.BENCH_QUICK === '1';
const SECONDS = quick ? 1 : 3;
const ROUNDS = Number(process.env.BENCH_ROUNDS) || (quick ? 1 : 5);
/**
 * How long each gateway is loaded before its rounds: a long-running daemon is
 * measured in its steady state. The gateway's per-request code is compiled by
 * V8 as it gets hot: with 1000 qubes and one client it spent about 1.1 ms of
 * CPU per request in its first second of load, 0.8 in its fourth and about
 * 0.6 from its fifth on (25 one-second runs in a row); a first round taken
 * after 4 s was still on that slope, the later ones were not.
 */
const WARM_UP_SECONDS = quick ? 1 : 10;

/**
 * One measured load (bench/http-load.ts, its own process, warmed up first):
 * for SECONDS, or until `amount` requests are answered (a request that needs
 * every qube's properties takes seconds with 16 clients on 1000 qubes, and in
 * a fixed 3 s none would finish). `cpu` is the CPU ms the given processes
 * spent per request over the measured run alone.
 */
async function load(
  url: string,
  token: string,
  connections: number,
  amount: number | undefined,
  pids: number[],
  seconds = SECONDS,
): Promise<{ rps: number; requests: number; p50: number; p99: number; errors: number; cpu: number }> {
  const { stdout } = await execFileP(
    process.execPath,
    [join(ROOT, 'dist', 'bench', 'http-load.js'), url, token, String(connections), String(seconds), String(amount ?? 0), ...pids.map(String)],
    { maxBuffer: 1 << 24 },
  );
  const r = JSON.parse(stdout) as { rps: number; requests: number; p50: number; p99: number; errors: number; cpu_ms: number };
  return { ...r, cpu: r.cpu_ms / r.requests };
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

/**
 * The floor gateway (rest-floor-gateway.ts) making `mode`'s calls and
 * answering `body`; resolves with the process and its base URL.
 */
async function startFloorGateway(socket: string, mode: string, body: Buffer, dir: string): Promise<{ proc: ChildProcess; url: string }> {
  const file = join(dir, `floor-body-${mode}.json`);
  writeFileSync(file, body);
  const { proc, match } = await startProcessMatching(
    [...REST_NODE_FLAGS, join(ROOT, 'dist', 'bench', 'rest-floor-gateway.js'), socket, mode, file],
    /^listening (\S+)$/,
  );
  return { proc, url: match[1]! };
}

/** One round of a figure: REST, direct and the floor gateway (each HTTP side's load carries its CPU ms per request). */
interface Round {
  rest: Awaited<ReturnType<typeof load>>;
  base: Awaited<ReturnType<typeof direct>>;
  directCpu: number;
  floor: Awaited<ReturnType<typeof load>>;
}

async function main(): Promise<void> {
  const only = process.env.BENCH_QUBES?.split(',').map(Number);
  const modes = process.env.BENCH_REST_FIELDS?.split(',');
  for (const n of only ?? (quick ? [10, 1000] : [10, 100, 1000])) {
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
        if (modes && !modes.includes(mode)) continue;
        const url = `${gw.url}/vms?fields=${fields}`;
        const warm = await load(url, token, 1, undefined, [], WARM_UP_SECONDS);
        // what SECONDS at the warm-up's rate gives, and at least two requests per client
        const amount = (clients: number): number => Math.max(clients * 2, Math.round(warm.rps * SECONDS));
        const qubesdPid = stack.parts.find((p) => p.name === 'qubesd')!.proc.pid!;
        // the floor gateway answers the gateway's own bytes
        const answer = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
        if (answer.status !== 200) throw new Error(`GET ${url}: ${answer.status}`);
        const floorGw = await startFloorGateway(socket, mode, Buffer.from(await answer.arrayBuffer()), gw.prefix);
        try {
          const floorUrl = `${floorGw.url}/rest/v0/vms?fields=${fields}`;
          await load(floorUrl, token, 1, undefined, [], WARM_UP_SECONDS);
          const r2 = (x: number) => Math.round(x * 100) / 100;
          for (const clients of [1, 16]) {
            const rounds: Round[] = [];
            // each side's CPU (gateway + qubesd) over its own measured window, per request
            const measureHttp = (target: string, pid: number) => load(target, token, clients, mode === 'list' ? undefined : amount(clients), [pid, qubesdPid]);
            const measureRest = async () => ({ rest: await measureHttp(url, gw.gateway.pid!) });
            const measureFloor = async () => ({ floor: await measureHttp(floorUrl, floorGw.proc.pid!) });
            // qubesd's CPU over the direct client's measured window only (not its start nor warm-up)
            const measureDirect = async () => {
              const base = await direct(socket, mode, clients, qubesdPid);
              return { base, directCpu: (base.cpu_ms + base.server_cpu_ms) / base.ops };
            };
            const sides = [measureRest, measureDirect, measureFloor] as const;
            for (let r = 0; r < ROUNDS; r++) {
              // in turn, which goes first rotating: a slow spell of the machine falls on all three
              const parts: Array<Partial<Round>> = [];
              for (let i = 0; i < sides.length; i++) parts.push(await sides[(r + i) % sides.length]!());
              const x = Object.assign({}, ...parts) as Round;
              rounds.push(x);
              // each round on stderr (stdout is the figures): a slow spell shows as one round apart
              process.stderr.write(
                `rest: ${n} qubes ${mode} ${clients} clients round ${r}: rest ${x.rest.rps.toFixed(0)} req/s (${x.rest.cpu.toFixed(2)} ms cpu), ` +
                  `direct ${x.base.ops_per_s.toFixed(0)} (${x.directCpu.toFixed(2)}), floor gateway ${x.floor.rps.toFixed(0)} (${x.floor.cpu.toFixed(2)})\n`,
              );
            }
            const ratios = rounds.map((x) => x.base.ops_per_s / x.rest.rps);
            const cpuRatios = rounds.map((x) => x.rest.cpu / x.directCpu);
            const floorRatios = rounds.map((x) => x.floor.rps / x.rest.rps);
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
              cpu_ms_per_req: r2(med((x) => x.rest.cpu)),
              direct_cpu_ms_per_op: r2(med((x) => x.directCpu)),
              cpu_cost_ratio: r2(median(cpuRatios)),
              floor_gateway_req_per_s: Math.round(med((x) => x.floor.rps) * 10) / 10,
              floor_gateway_cpu_ms_per_req: r2(med((x) => x.floor.cpu)),
              floor_gateway_cost_ratio: r2(med((x) => x.base.ops_per_s / x.floor.rps)),
              vs_floor_gateway: r2(median(floorRatios)),
              vs_floor_gateway_range: [r2(Math.min(...floorRatios)), r2(Math.max(...floorRatios))],
              floor_gateway_errors: rounds.reduce((a, x) => a + x.floor.errors, 0),
            });
          }
        } finally {
          await stopProcess(floorGw.proc);
        }
      }
    } finally {
      await gw.stop();
    }
  }
}

await main();
