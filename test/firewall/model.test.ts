// The per-qube firewall in-process: loading once, qubes without a firewall,
// and Qubes' clone for a new disposable (rules in memory, no file).
import t from 'tap';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE } from '../helpers/qubesd.js';
import { QubesApp } from '../../qubesd/model/app.js';
import { parseQubesXml } from '../../qubesd/store/qubes-xml.js';
import { Firewalls } from '../../qubesd/firewall/firewall.js';

const base = mkdtempSync(join(tmpdir(), 'fw-model-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));
cpSync(join(FIXTURE, 'base'), base, { recursive: true });
const xml = readFileSync(join(FIXTURE, 'qubes.xml'), 'utf8').replaceAll('@BASE@', base);
const app = QubesApp.fromDoc(parseQubesXml(xml), { baseDir: base });
const firewalls = new Firewalls();
const firewallOf = (vm: Parameters<Firewalls['of']>[0]) => firewalls.of(vm);

t.test('loaded once per qube; dom0 has none', async (t) => {
  const work = app.getVm('work')!;
  const fw = firewallOf(work)!;
  t.equal(fw.rules.length, 3);
  t.equal(firewallOf(work), fw, 'cached with the qube');
  t.equal(firewallOf(app.getVm('dom0')!), null);
});

t.test("clone: the template's rules, in memory only, until the first change", async (t) => {
  const dvm = app.getVm('personal')!;
  firewalls.clone(app.getVm('work')!, dvm);
  t.equal(firewallOf(dvm)!.apiText(), firewallOf(app.getVm('work')!)!.apiText());
  const file = join(base, 'appvms', 'personal', 'firewall.xml');
  t.notOk(existsSync(file));
  await firewallOf(dvm)!.replace(firewallOf(dvm)!.rules);
  t.equal(readFileSync(file, 'utf8'), readFileSync(join(base, 'appvms', 'work', 'firewall.xml'), 'utf8'));
});
