// The baseline of bench/rest.bench.ts, run in its own process: the same data
// as the REST collection, fetched straight from qubesd's socket
// (rest-calls.ts) by `concurrency` loops for `seconds`, after a warm-up.
//   node dist/bench/rest-direct.js SOCKET list|list+getall CONCURRENCY SECONDS [QUBESD_PID]
// Prints {"ops_per_s": N, "ops": N, "cpu_ms": N, "server_cpu_ms": N}: its own
// CPU time while measuring, and qubesd's over the same window (given its pid).
import { cpuMs } from './proc-cpu.js';
import { directCalls, isDirectMode } from './rest-calls.js';

const [socket, mode, conc, secs, serverPid] = process.argv.slice(2);
if (!socket || !isDirectMode(mode)) throw new Error('usage: rest-direct.js SOCKET list|list+getall CONCURRENCY SECONDS [QUBESD_PID]');
const concurrency = Number(conc),
  seconds = Number(secs);

const once = (): Promise<void> => directCalls(socket, mode);

// warmed up as the gateway is before it is measured (one client, one second):
// otherwise this side's JIT compilation is counted in its cost and the gateway's is not
for (const until = performance.now() + 1000; performance.now() < until;) await once();
const start = performance.now();
const end = start + seconds * 1000;
const cpu0 = process.cpuUsage();
const server0 = serverPid ? cpuMs(serverPid) : 0;
let ops = 0;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      await once();
      ops++;
    }
  }),
);
// the last operations end after `end`: the rate is over the time they took
const elapsed = (performance.now() - start) / 1000;
const cpu = process.cpuUsage(cpu0);
const server = serverPid ? cpuMs(serverPid) - server0 : null;
process.stdout.write(JSON.stringify({ ops_per_s: ops / elapsed, ops, cpu_ms: (cpu.user + cpu.system) / 1000, server_cpu_ms: server }) + '\n');
