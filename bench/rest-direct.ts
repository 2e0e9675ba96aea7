// The baseline of bench/rest.bench.ts, run in its own process: the same data
// as the REST collection, fetched straight from qubesd's socket through
// lib/qubesd-client.ts by `concurrency` loops for `seconds`.
//   node dist/bench/rest-direct.js SOCKET list|list+getall CONCURRENCY SECONDS
// Prints {"ops_per_s": N, "ops": N, "cpu_ms": N} (its own CPU time while measuring).
import pLimit from 'p-limit';
import { call } from '../lib/qubesd-client.js';

const [socket, mode, conc, secs] = process.argv.slice(2);
const concurrency = Number(conc), seconds = Number(secs);
/** as the gateway: at most 64 connections to qubesd at once, process-wide */
const IN_FLIGHT = 64;
const connections = pLimit(IN_FLIGHT);

async function once(): Promise<void> {
  const list = await connections(() => call(socket!, { method: 'admin.vm.List', dest: 'dom0' }));
  if (mode !== 'list+getall') return;
  const names = list.split('\n').filter(Boolean).map((l) => l.slice(0, l.indexOf(' ')));
  await Promise.all(names.map((name) => connections(() => call(socket!, { method: 'admin.vm.property.GetAll', dest: name }))));
}

const end = performance.now() + seconds * 1000;
const cpu0 = process.cpuUsage();
let ops = 0;
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (performance.now() < end) { await once(); ops++; }
}));
const cpu = process.cpuUsage(cpu0);
process.stdout.write(JSON.stringify({ ops_per_s: ops / seconds, ops, cpu_ms: (cpu.user + cpu.system) / 1000 }) + '\n');
