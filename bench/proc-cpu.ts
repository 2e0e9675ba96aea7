// CPU time a process has used so far, from /proc/PID/stat (user + system),
// for the benches that report CPU per call beside calls/s: the servers and
// load generators measured are other processes.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** clock ticks per second, as /proc counts them */
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** user + system CPU time of a process, in ms */
export function cpuMs(pid: number | string): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // the command name (in parentheses) may itself hold spaces and ')'
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}
