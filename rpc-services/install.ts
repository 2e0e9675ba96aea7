// qubes-install: lays out a complete installation under a prefix, as a Qubes
// dom0 has it: service entries in etc/qubes-rpc, the default policy in
// etc/qubes/policy.d, systemd units, and etc/qubes/stack.json telling every
// program of this installation where its sockets and state are.
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { METHODS } from '../lib/api-methods.js';
import { configPath, layoutFor, type StackConfig } from '../lib/stack-config.js';
import { defaultPolicyFiles } from './policy-files.js';
import { POLICY_SERVICES, servedService } from './service-names.js';
import { bundleHandler } from './bundle.js';
import { QUBESD_NODE_FLAGS } from '../lib/node-flags.js';
import { policyDaemonAskKeys } from './qrexec/ask.js';
import { DAEMON_SCHEMAS, daemonConfigPath, installedValues } from './daemon-configs.js';
import { packagedFile } from '../lib/config/docs.js';

/** dist/rpc-services/install.js → the checkout */
export const CHECKOUT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface InstallOptions {
  prefix: string;
  /** 'handler' (default): every entry is the handler program; 'socket': admin.* entries are qubesd.sock itself */
  entries?: 'handler' | 'socket';
  backend?: 'sim' | 'libvirt';
  ask?: string;
  checkout?: string;
}

/** Every service a qube can call, with what its entry should be. */
export function serviceEntries(mode: 'handler' | 'socket'): Array<{ name: string; kind: 'handler' | 'socket' }> {
  const names = [...METHODS.map((m) => m.name), ...POLICY_SERVICES.map((p) => p.name)];
  const out: Array<{ name: string; kind: 'handler' | 'socket' }> = [];
  for (const name of names) {
    const s = servedService(name);
    if (!s) continue;
    out.push({ name, kind: mode === 'socket' && s.kind === 'admin' ? 'socket' : 'handler' });
  }
  return out;
}

/** Where an installation keeps its handler program (.cjs: even under a "type": "module" tree). */
export function handlerPath(prefix: string): string {
  return join(prefix, 'usr', 'lib', 'qubes', 'qubes-rpc-handler.cjs');
}

function replaceLink(target: string, path: string): void {
  try {
    if (lstatSync(path)) unlinkSync(path);
  } catch {
    /* absent */
  }
  symlinkSync(target, path);
}

function fillTemplate(text: string, c: StackConfig, cfgPath: string): string {
  const vars: Record<string, string> = {
    PREFIX: c.prefix,
    CHECKOUT: c.checkout,
    NODE: process.execPath,
    QUBESDNODEFLAGS: QUBESD_NODE_FLAGS.join(' '),
    CONFIG: cfgPath,
    ETCQUBES: join(c.prefix, 'etc', 'qubes'),
    STORE: c.qubesd.store,
    BASEDIR: c.qubesd.baseDir,
    SOCKETDIR: c.qubesd.socketDir,
    POLICYDIR: c.policy.dir,
    RUNTIMEPOLICYDIR: c.policy.runtimeDir,
    BACKUPDIR: c.qubesd.backupProfileDir,
    BACKEND: c.qubesd.backend,
    LOG: c.qubesd.log,
    POLICYSOCKET: c.policy.socket,
    INTERNALSOCKET: c.qubesd.internalSocket,
    GUESTSERVICESDIR: c.qubesd.guestServicesDir ?? '',
    QREXECSOCKETDIR: c.qrexec.socketDir,
    SERVICEDIR: c.qrexec.serviceDir,
  };
  return text.replace(/@([A-Z]+)@/g, (m, k: string) => vars[k] ?? m);
}

export interface InstallReport {
  config: string;
  entries: number;
  policyFiles: string[];
  units: string[];
  daemonConfigs: string[];
}

export function install(o: InstallOptions): InstallReport {
  const prefix = resolve(o.prefix);
  const checkout = o.checkout ?? CHECKOUT;
  const c = layoutFor(prefix, checkout);
  if (o.backend) c.qubesd.backend = o.backend;
  if (o.ask) c.qrexec.ask = o.ask;
  policyDaemonAskKeys(c.qrexec.ask);
  c.qrexec.entries = o.entries ?? 'handler';

  for (const d of [
    c.qrexec.serviceDir,
    join(c.policy.dir, 'include'),
    c.policy.runtimeDir,
    c.qrexec.socketDir,
    c.qubesd.baseDir,
    c.qubesd.guestServicesDir ?? c.qubesd.baseDir,
    dirname(c.qubesd.log),
    dirname(c.policy.adminLog),
    c.qubesd.backupProfileDir,
    dirname(c.policy.socket),
  ]) {
    mkdirSync(d, { recursive: true });
  }

  // The handler program, as one fast-starting file (see bundle.ts).
  const handler = handlerPath(prefix);
  mkdirSync(dirname(handler), { recursive: true });
  writeFileSync(handler, bundleHandler(checkout));
  chmodSync(handler, 0o755);

  // Service entries: links to the handler program, or (socket mode, as Qubes
  // R4.1+) to qubesd.sock itself; relative, so that the prefix can move.
  const entries = serviceEntries(c.qrexec.entries);
  for (const e of entries) {
    const path = join(c.qrexec.serviceDir, e.name);
    replaceLink(relative(c.qrexec.serviceDir, e.kind === 'socket' ? c.qubesd.socket : handler), path);
  }

  // Generated policy is rewritten on every install; include files are the
  // administrator's and are only created when missing.
  const policyFiles: string[] = [];
  for (const [rel, text] of defaultPolicyFiles()) {
    const path = join(c.policy.dir, rel);
    if (rel.startsWith('include/') && existsSync(path)) continue;
    writeFileSync(path, text);
    policyFiles.push(rel);
  }

  // An example profile, under a name qubesd does not read as a profile.
  const sample = join(checkout, 'contrib', 'backup', 'example.conf.sample');
  if (existsSync(sample)) writeFileSync(join(c.qubesd.backupProfileDir, 'example.conf.sample'), readFileSync(sample));

  const cfgPath = configPath(prefix);
  mkdirSync(dirname(cfgPath), { recursive: true });
  writeFileSync(cfgPath, JSON.stringify(c, null, 2) + '\n');

  // Each daemon's packaged <daemon>.conf (rewritten on every install, as a
  // package update would) and its empty drop-in directory (the operator's).
  const daemonConfigs: string[] = [];
  for (const s of DAEMON_SCHEMAS) {
    const path = daemonConfigPath(prefix, s.daemon);
    writeFileSync(path, packagedFile(s, installedValues(c, s.daemon)));
    mkdirSync(`${path}.d`, { recursive: true });
    daemonConfigs.push(path);
  }

  const unitDir = join(prefix, 'usr', 'lib', 'systemd', 'system');
  mkdirSync(unitDir, { recursive: true });
  const templates = join(checkout, 'contrib', 'systemd');
  const units = readdirSync(templates).filter((f) => f.endsWith('.service'));
  for (const u of units) {
    writeFileSync(join(unitDir, u), fillTemplate(readFileSync(join(templates, u), 'utf8'), c, cfgPath));
    chmodSync(join(unitDir, u), 0o644);
  }
  return { config: cfgPath, entries: entries.length, policyFiles, units, daemonConfigs };
}

const USAGE = `usage: qubes-install --prefix DIR [--entries handler|socket] [--backend sim|libvirt]
                     [--ask deny|allow|command:PROGRAM|socket:PATH]`;

export function main(argv = process.argv.slice(2)): void {
  let o: InstallOptions;
  try {
    const { values } = parseArgs({
      args: argv,
      options: { prefix: { type: 'string' }, entries: { type: 'string' }, backend: { type: 'string' }, ask: { type: 'string' }, help: { type: 'boolean' } },
      strict: true,
    });
    if (values.help) {
      console.log(USAGE);
      return;
    }
    if (!values.prefix) throw new Error('--prefix DIR is required');
    if (values.entries && values.entries !== 'handler' && values.entries !== 'socket') throw new Error('--entries is handler or socket');
    if (values.backend && values.backend !== 'sim' && values.backend !== 'libvirt') throw new Error('--backend is sim or libvirt');
    o = { prefix: values.prefix, entries: values.entries as InstallOptions['entries'], backend: values.backend as InstallOptions['backend'], ask: values.ask };
  } catch (e) {
    console.error(`qubes-install: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  try {
    const r = install(o);
    console.log(`qubes-install: ${r.entries} service entries in ${join(resolve(o.prefix), 'etc/qubes-rpc')}`);
    console.log(`qubes-install: policy ${r.policyFiles.join(', ') || '(include files kept)'}`);
    console.log(`qubes-install: units ${r.units.join(', ')}`);
    console.log(`qubes-install: configuration ${r.config}; daemons: ${r.daemonConfigs.join(', ')} (drop-ins in <file>.d/)`);
    console.log(`qubes-install: run: qubes-stack --prefix ${o.prefix}`);
  } catch (e) {
    console.error(`qubes-install: ${(e as Error).message}`);
    process.exit(1);
  }
}
