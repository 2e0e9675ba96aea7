// qubes-wait-init-complete SECONDS [--prefix DIR]: as XAPI's
// xapi-wait-init-complete, exits 0 as soon as the whole stack has started,
// and otherwise, after SECONDS, exits 1 naming each part that is not ready.
// A part is ready when its ready file (the ready_file key of its
// configuration) names a live process: qubesd writes it once the store is
// loaded, the hypervisor connected and running qubes reconciled; the policy
// daemon once the policy is loaded; the dispatcher once it listens; the REST
// gateway (counted only when its `listen` key is set) once it listens.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../lib/config/load.js';
import { liveReady } from '../lib/config/ready.js';
import { DAEMON_SCHEMAS, daemonConfigPath } from './daemon-configs.js';
import { CHECKOUT } from './install.js';

const WHAT: Record<string, string> = {
  qubesd: 'store loaded, hypervisor connected, running qubes reconciled',
  'qubes-policy-daemon': 'policy loaded, socket listening',
  'qrexec-dispatcher': 'qube sockets listening',
  'qubes-rest': 'gateway listening',
};

export interface Expected {
  daemon: string;
  readyFile: string;
}

/** The parts an installation must have ready, from their configuration files. */
export function expectedParts(prefix: string): Expected[] {
  const out: Expected[] = [];
  for (const s of DAEMON_SCHEMAS) {
    const file = daemonConfigPath(prefix, s.daemon);
    if (!existsSync(file)) {
      if (s.daemon === 'qubes-rest') continue;
      throw new Error(`no installation under ${prefix}: ${file} is missing`);
    }
    const c = loadConfig(s, { file });
    if (s.daemon === 'qubes-rest' && !c.values.listen) continue;
    const readyFile = String(c.values.ready_file);
    if (!readyFile) throw new Error(`${s.daemon}: ready_file is not set in its configuration, so its readiness cannot be seen`);
    out.push({ daemon: s.daemon, readyFile });
  }
  return out;
}

const USAGE = 'usage: qubes-wait-init-complete SECONDS [--prefix DIR]';

export async function main(argv = process.argv.slice(2)): Promise<number> {
  let seconds: number, prefix: string;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { prefix: { type: 'string' }, help: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length !== 1 || !/^\d+(\.\d+)?$/.test(positionals[0]!)) throw new Error('SECONDS (a number) is required');
    seconds = Number(positionals[0]);
    prefix = resolve(values.prefix ?? join(CHECKOUT, 'tmp', 'stack'));
  } catch (e) {
    console.error(`qubes-wait-init-complete: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  let parts: Expected[];
  try {
    parts = expectedParts(prefix);
  } catch (e) {
    console.error(`qubes-wait-init-complete: ${(e as Error).message}`);
    return 1;
  }
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const missing = parts.filter((p) => !liveReady(p.readyFile));
    if (!missing.length) return 0;
    if (Date.now() >= deadline) {
      console.error(`qubes-wait-init-complete: not ready after ${seconds} s: ${missing.map((p) => `${p.daemon} (${WHAT[p.daemon] ?? 'started'})`).join('; ')}`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now()))));
  }
}
