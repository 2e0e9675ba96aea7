// Qubes' extensions and class handlers that react to feature and tag
// changes and to new qubes (qubes.ext.services, qubes.ext.admin,
// qubes.ext.gui/audio, the disposable-template mixin, boot modes).
import { QubesException, QubesValueError, pyRepr } from '../errors.js';
import { fire, isDefault, setProperty } from './properties.js';
import { resetChildBootmode, syncVmTag } from './properties-vm-rules.js';
import { truthy } from './values.js';
import type { QubesApp } from './app.js';
import type { Vm } from './vm.js';

function validateDelay(value: string, old: string | undefined): void {
  if (value === old) return;
  const v = value || '0';
  if (!/^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$|^\s*[+-]?(inf|infinity|nan)\s*$/i.test(v)) {
    throw QubesValueError('Invalid preload-dispvm-delay value: not an integer or float');
  }
}

/** a disposable template can preload only with qrexec and the RPCs preloading waits on */
function validatePreloadMax(vm: Vm, value: string): void {
  if (!truthy(vm.checkFeature('qrexec', 'template', false))) throw QubesValueError('Qube does not support qrexec');
  const missing = ['qubes.WaitForRunningSystem', 'qubes.WaitForSession'].filter((svc) => !truthy(vm.checkFeature('supported-rpc.' + svc, 'template', false)));
  if (missing.length) throw QubesValueError(`Qube does not support the RPC(s) '${missing.join(', ')}'`);
  if (!/^\d+$/.test(value || '0')) throw QubesValueError('Invalid preload-dispvm-max value: not a digit');
}

export class Extensions {
  constructor(private readonly app: QubesApp) {}

  /** domain-feature-pre-set: handlers that may refuse the value */
  featurePreSet(vm: Vm, key: string, value: string, old: string | undefined): void {
    if (key.startsWith('service.')) {
      const service = key.slice('service.'.length);
      if (!service) throw QubesValueError('Service name cannot be empty');
      if (service.includes('/')) throw QubesValueError('Service name cannot contain a slash');
      if (service === '.' || service === '..') throw QubesValueError('Service name cannot be "." or ".."');
      if (service.length > 48 && !service.startsWith('app-dispvm.')) throw QubesValueError('Service name must not exceed 48 bytes');
    }
    if (vm.has('template_for_dispvms')) {
      if (key === 'preload-dispvm-delay') validateDelay(value, old);
      if (key === 'preload-dispvm-max') validatePreloadMax(vm, value);
    }
    if (vm.isAdmin) {
      if (key === 'preload-dispvm-threshold' && !/^\d+$/.test(value || '0')) {
        throw QubesValueError('Invalid preload-dispvm-threshold value: not a digit');
      }
      if (key === 'preload-dispvm-delay') validateDelay(value, old);
      if (key === 'preload-dispvm-max' && value !== old) {
        // the system-wide maximum applies to the default disposable template
        const appvm = this.app.globalVm('default_dispvm');
        if (appvm) {
          fire(appvm, 'domain-feature-pre-set:preload-dispvm-max', [
            ['feature', 'preload-dispvm-max'],
            ['value', value],
            ['oldvalue', old ?? null],
          ]);
          if (appvm.has('template_for_dispvms')) validatePreloadMax(appvm, value);
        }
      }
    }
  }

  /** domain-feature-set: properties computed from features announce their new default */
  featurePostSet(vm: Vm, key: string, value: string, old: string | undefined): void {
    if (value === old) return;
    if (key === 'boot-mode.active' && vm.has('bootmode') && isDefault(vm, vm.table.byName.get('bootmode')!)) {
      fire(vm, 'property-reset:bootmode', [['name', 'bootmode']]);
    }
    if (key === 'boot-mode.appvm-default' && vm.klass === 'TemplateVM' && isDefault(vm, vm.table.byName.get('appvm_default_bootmode')!)) {
      // Qubes' own handler of that reset notifies the children, then the feature handler does again
      resetChildBootmode(vm);
      fire(vm, 'property-reset:appvm_default_bootmode', [['name', 'appvm_default_bootmode']]);
      resetChildBootmode(vm);
    }
  }

  /** Qubes looks the creator of a created-by-<qube> tag up and fails on an unknown one (before we store it). */
  tagPreAdd(_vm: Vm, tag: string): void {
    if (!tag.startsWith('created-by-')) return;
    const creator = tag.slice('created-by-'.length);
    if (!this.app.getVm(creator)) throw QubesException(`no such qube as the creator in tag ${pyRepr(tag)}: ${pyRepr(creator)}`);
  }

  /** domain-tag-add: the creator's 'tag-created-vm-with' and 'set-created-guivm' features */
  tagAdded(vm: Vm, tag: string): void {
    if (!tag.startsWith('created-by-')) return;
    const creator = this.app.getVm(tag.slice('created-by-'.length));
    if (!creator) return;
    for (const t of (creator.features.get('tag-created-vm-with') ?? '').split(/\s+/)) if (t) vm.addTag(t);
    const guivm = creator.features.get('set-created-guivm');
    if (guivm && vm.has('guivm')) setProperty(vm, vm.table.byName.get('guivm')!, guivm);
  }

  /** domain-init of a new qube: the gui and audio extensions tag it with its GuiVM/AudioVM */
  domainInit(vm: Vm): void {
    for (const kind of ['guivm', 'audiovm'] as const) {
      if (!vm.has(kind)) continue;
      const target = vm.vmProp(kind);
      if (target && !vm.tags.has(`${kind}-${target.name}`)) syncVmTag(vm, kind, target);
    }
  }
}
