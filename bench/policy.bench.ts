// Policy engine throughput on generated policies of 1 000, 10 000 and
// 100 000 rules: rules parsed per second, requests evaluated per second in
// process, and end to end through bin/qubes-policy-eval (process start, load
// and JSON included). Baselines: the same evaluation done the way the
// reference engine does it (every rule scanned for every request), measured
// here, and the reference engine's own figures on this kind of machine.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { report } from './common.js';
import { checkRequest, ruleMatches, type PolicyRequest } from '../policy/evaluator.js';
import { PolicyEngine } from '../policy/policy-engine.js';
import { systemView, type SystemInfo } from '../policy/system-info.js';

const BENCH = 'policy';
const SIZES = [1000, 10000, 100000];
// the reference engine (qubes-core-qrexec), as stated for this machine class
const REFERENCE = { parse: 40000, eval: { 1000: 9900, 10000: 640, 100000: 46 } as Record<number, number> };
const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

const QUBES = ['work', 'personal', 'vault', 'untrusted', 'sys-net', 'sys-usb', 'default-dvm', 'fedora-41'];

function systemInfo(): SystemInfo {
  const domains: SystemInfo['domains'] = {
    dom0: {
      tags: [],
      type: 'AdminVM',
      template_for_dispvms: false,
      default_dispvm: 'default-dvm',
      power_state: 'Running',
      uuid: '00000000-0000-0000-0000-000000000000',
      guivm: null,
    },
  };
  QUBES.forEach((name, i) => {
    domains[name] = {
      tags: [`t${i % 3}`],
      type: name === 'fedora-41' ? 'TemplateVM' : 'AppVM',
      template_for_dispvms: name === 'default-dvm',
      default_dispvm: 'default-dvm',
      power_state: i % 2 ? 'Running' : 'Halted',
      uuid: `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`,
      guivm: 'dom0',
    };
  });
  return { domains };
}

/** A policy of n rules: ~20 rules per service, some per argument, tokens of every kind, wildcard rules last. */
function writePolicy(dir: string, n: number): string[] {
  const services: string[] = [];
  const files = 10;
  const per = Math.ceil(n / files);
  let k = 0;
  for (let f = 0; f < files; f++) {
    const lines: string[] = [];
    for (let i = 0; i < per && k < n - 2; i++, k++) {
      const svc = `bench.Svc${Math.floor(k / 20)}`;
      if (k % 20 === 0) services.push(svc);
      const arg = k % 4 === 0 ? '*' : `+arg${k % 3}`;
      const src = ['@anyvm', `@tag:t${k % 3}`, QUBES[k % QUBES.length]!, '@type:AppVM'][k % 4]!;
      const dst = ['@anyvm', QUBES[(k + 1) % QUBES.length]!, '@dispvm', `@tag:t${(k + 1) % 3}`, '@default'][k % 5]!;
      const action = ['allow', 'deny', 'ask default_target=vault'][k % 3]!;
      lines.push(`${svc} ${arg} ${src} ${dst} ${dst === '@default' && action === 'allow' ? 'allow target=vault' : action}`);
    }
    writeFileSync(join(dir, `${String(f * 10).padStart(2, '0')}-bench.policy`), lines.join('\n') + '\n');
  }
  writeFileSync(join(dir, '99-default.policy'), '* * @anyvm @dispvm ask\n* * @anyvm @anyvm deny\n');
  return services;
}

function requests(services: string[], count: number): PolicyRequest[] {
  const out: PolicyRequest[] = [];
  let x = 12345;
  const rnd = (m: number) => (x = (x * 1103515245 + 12345) & 0x7fffffff) % m;
  for (let i = 0; i < count; i++) {
    out.push({
      service: services[rnd(services.length)]!,
      argument: ['', '+arg0', '+arg1', '+arg2'][rnd(4)]!,
      source: QUBES[rnd(QUBES.length)]!,
      target: [...QUBES, '@dispvm', ''][rnd(QUBES.length + 2)]!,
    });
  }
  return out;
}

function timed(fn: () => number, minMs: number): number {
  let done = 0;
  const t0 = performance.now();
  let dt = 0;
  while ((dt = performance.now() - t0) < minMs) done += fn();
  return (done / dt) * 1000;
}

function endToEnd(policyDir: string, infoFile: string, reqs: PolicyRequest[]): Promise<number> {
  const input = reqs.map((r, i) => JSON.stringify({ id: i, ...r })).join('\n') + '\n';
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [join(root, 'bin', 'qubes-policy-eval'), '--policy-dir', policyDir, '--system-info', infoFile], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let lines = 0;
    child.stdout.on('data', (d: Buffer) => {
      for (let i = d.indexOf(10); i >= 0; i = d.indexOf(10, i + 1)) lines++;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 || lines !== reqs.length) reject(new Error(`qubes-policy-eval exit ${code}, ${lines}/${reqs.length} answers`));
      else resolve((reqs.length / (performance.now() - t0)) * 1000);
    });
    child.stdin.end(input);
  });
}

const work = mkdtempSync(join(tmpdir(), 'policy-bench-'));
try {
  const info = systemInfo();
  const view = systemView(info);
  const infoFile = join(work, 'system_info.json');
  writeFileSync(infoFile, JSON.stringify(info));
  for (const n of SIZES) {
    const dir = join(work, `p${n}`);
    mkdirSync(dir);
    const services = writePolicy(dir, n);
    globalThis.gc?.();
    let engine = PolicyEngine.load({ policyDir: dir, legacyDir: join(work, 'none') });
    const parse = timed(() => {
      engine = PolicyEngine.load({ policyDir: dir, legacyDir: join(work, 'none') });
      return engine.policy.rules.length;
    }, 1500);
    report({ bench: BENCH, name: 'parse', rules: n, value: Math.round(parse), unit: 'rules/s', vs_reference: +(parse / REFERENCE.parse).toFixed(1) });

    const reqs = requests(services, 20000);
    let i = 0;
    const evalRate = timed(() => {
      for (let j = 0; j < 1000; j++) engine.policy.evaluate(reqs[i++ % reqs.length]!, view);
      return 1000;
    }, 2000);
    // the reference's way: every rule, in order, for every request
    const rules = engine.policy.rules;
    const scanRate = timed(() => {
      for (let j = 0; j < 20; j++) {
        const req = checkRequest(reqs[i++ % reqs.length]!, view, []);
        for (const r of rules) if (ruleMatches(r, req)) break;
      }
      return 20;
    }, 1000);
    report({
      bench: BENCH,
      name: 'eval-inprocess',
      rules: n,
      value: Math.round(evalRate),
      unit: 'req/s',
      vs_full_scan: +(evalRate / scanRate).toFixed(1),
      full_scan: Math.round(scanRate),
      vs_reference: +(evalRate / REFERENCE.eval[n]!).toFixed(1),
    });

    const e2eCount = 200000;
    const e2e = await endToEnd(dir, infoFile, requests(services, e2eCount));
    report({
      bench: BENCH,
      name: 'eval-end-to-end',
      rules: n,
      requests: e2eCount,
      value: Math.round(e2e),
      unit: 'req/s',
      vs_reference: +(e2e / REFERENCE.eval[n]!).toFixed(1),
    });
    rmSync(dir, { recursive: true, force: true });
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
