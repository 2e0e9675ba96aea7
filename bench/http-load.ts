// One measured HTTP load of bench/rest.bench.ts, in its own process:
// autocannon (a real HTTP load generator) on URL with CLIENTS connections,
// first for a warm-up that is not counted, then for SECONDS (or AMOUNT
// requests). The warm-up mirrors the direct client's (rest-direct.ts): each
// side is measured with its client and its servers warm, in one process that
// keeps the load going from warm-up into the measure. Without it the HTTP
// sides were measured from a load generator's first, cold second and after
// the gateway and qubesd had been idle while the other sides ran, and the
// direct side was not.
//   node dist/bench/http-load.js URL TOKEN CLIENTS SECONDS AMOUNT [PID...]
// AMOUNT 0: run for SECONDS. Prints {"rps", "requests", "p50", "p99",
// "errors", "cpu_ms"}: cpu_ms is the CPU time the PIDs (the gateway, qubesd)
// used over the measured run only.
import autocannon from 'autocannon';
import { cpuMs } from './proc-cpu.js';

const [url, token, conc, secs, amt, ...pids] = process.argv.slice(2);
if (!url || !token || !conc || !secs || amt === undefined) throw new Error('usage: http-load.js URL TOKEN CLIENTS SECONDS AMOUNT [PID...]');
const connections = Number(conc),
  amount = Number(amt);

/** CPU time (ms) the PIDs have used so far. */
const pidsCpuMs = (): number => pids.reduce((ms, pid) => ms + cpuMs(pid), 0);

const common = {
  url,
  connections,
  headers: { authorization: `Bearer ${token}` },
  // autocannon notices the end at its next sample: with its default of 1 s,
  // a run of `amount` requests was counted as lasting up to a second longer
  // than it did (its rate up to a quarter too low)
  sampleInt: 20,
  timeout: 600,
};
// a request that needs every qube's properties takes seconds with 16 clients
// on 1000 qubes: its warm-up is one request per client (a second would cut
// them off and leave them running into the measure)
await autocannon(amount > 0 ? { ...common, amount: connections } : { ...common, duration: 1 });
const cpu0 = pidsCpuMs();
const r = await autocannon(amount > 0 ? { ...common, amount } : { ...common, duration: Number(secs) });
const cpu = pidsCpuMs() - cpu0;
process.stdout.write(
  JSON.stringify({
    rps: r.requests.total / r.duration,
    requests: r.requests.total,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.non2xx,
    cpu_ms: cpu,
  }) + '\n',
);
