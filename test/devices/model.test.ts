// Stored device assignments in-process: reading <devices> elements the way
// Qubes' loader does (legacy attributes, skipped entries) and writing them
// back in Qubes' layout.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURE } from '../helpers/qubesd.js';
import { QubesApp } from '../../qubesd/model/app.js';
import { parseQubesXml } from '../../qubesd/store/qubes-xml.js';
import { assignmentsOf, setAssignments, unavailableRequiredDevice } from '../../qubesd/model/devices.js';

function fixtureApp(): QubesApp {
  const xml = readFileSync(join(FIXTURE, 'qubes.xml'), 'utf8').replaceAll('@BASE@', '/nonexistent');
  const app = QubesApp.fromDoc(parseQubesXml(xml), { baseDir: '/nonexistent' });
  app.drainChanges();
  return app;
}

t.test('reading stored assignments as Qubes loads them', async (t) => {
  const app = fixtureApp();
  const vm = app.getVm('work')!;
  vm.devices = [
    '<devices class="pci"/>',
    '<devices class="block">' +
      '<device backend-domain="sys-net" id="sda" required="yes"/>' +
      '<device backend-domain="sys-net" id="sdb" required="no"><option name="identity">dead:beef</option><option name="read-only"></option></device>' +
      '<device backend-domain="nosuch" id="sdc" mode="required"/>' +
      '<device backend-domain="*" id="sdd" mode="required"/>' +
      '<device backend-domain="sys-net" id="sde" mode="manual"/>' +
      '<device backend-domain="sys-net" id="sdf" mode="bogus"/>' +
      '<device backend-domain="sys-net" id="sdg"/>' +
      '<device id="sdh" mode="ask-to-attach" identity="x"/>' +
      '</devices>',
  ];
  t.same(assignmentsOf(vm, 'pci'), []);
  t.same(
    assignmentsOf(vm, 'block'),
    [
      { backend: 'sys-net', port: 'sda', deviceId: '*', mode: 'required', options: [] },
      { backend: 'sys-net', port: 'sdb', deviceId: 'dead:beef', mode: 'auto-attach', options: [['read-only', 'None']] },
      { backend: 'sys-net', port: 'sdg', deviceId: '*', mode: 'required', options: [] },
      { backend: '*', port: 'sdh', deviceId: 'x', mode: 'ask-to-attach', options: [] },
    ],
    'legacy required=, identity option, empty option text; unknown or "*" backends and manual/unknown modes skipped',
  );
  t.same(app.drainChanges(), [], 'reading changes nothing');
});

t.test("writing one class: Qubes' layout, other classes untouched, the qube marked for saving", async (t) => {
  const app = fixtureApp();
  const vm = app.getVm('vault')!;
  t.same(vm.devices, ['<devices class="pci"/>']);
  setAssignments(vm, 'block', [
    { backend: 'sys-usb', port: '2-1', deviceId: '1234:5678', mode: 'auto-attach', options: [['read-only', 'yes']], frontend: null },
  ]);
  t.same(vm.devices, [
    '<devices class="pci"/>',
    '<devices class="block">\n  <device backend-domain="sys-usb" id="2-1" mode="auto-attach" identity="1234:5678">\n' +
      '    <option name="read-only">yes</option>\n  </device>\n</devices>',
  ]);
  t.equal(assignmentsOf(vm, 'block')[0]!.frontend, null, 'held in memory as given');
  setAssignments(vm, 'pci', [{ backend: '*', port: '00_1f.2', deviceId: '*', mode: 'required', options: [] }]);
  t.equal(vm.devices[0], '<devices class="pci">\n  <device backend-domain="*" id="00_1f.2" mode="required" identity="*"/>\n</devices>');
  t.equal(assignmentsOf(vm, 'pci').length, 1, 'an "any backend" assignment stays while the daemon runs');
  const changes = app.drainChanges();
  t.equal(changes.length, 1);
  t.equal(changes[0]!.kind === 'domain' && changes[0]!.doc.devices, vm.devices);
  vm.devices = [...vm.devices];
  t.same(assignmentsOf(vm, 'pci'), [], '... but is not read back from qubes.xml, as in Qubes');
});

t.test('a required device keeps the qube from starting, as no device is available here', async (t) => {
  const app = fixtureApp();
  const vm = app.getVm('personal')!;
  t.equal(unavailableRequiredDevice(vm), null);
  setAssignments(vm, 'block', [{ backend: 'sys-net', port: 'sda', deviceId: '*', mode: 'auto-attach', options: [] }]);
  t.equal(unavailableRequiredDevice(vm), null, 'auto-attach does not block the start');
  setAssignments(vm, 'block', [...assignmentsOf(vm, 'block'), { backend: 'sys-net', port: 'sdb', deviceId: 'x:y', mode: 'required', options: [] }]);
  t.equal(unavailableRequiredDevice(vm), 'Block device sys-net:sdb:x:y not available');
});
