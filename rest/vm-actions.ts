// What each action on a qube is, in Admin API calls. Lifecycle actions are
// single calls (clean_reboot and hard_reboot two); clone is the sequence
// Qubes' own qvm-clone makes (create, copy properties, tags, features,
// firewall, clone the volumes that persist), undone if any step fails;
// create_disposable asks a disposable template for a new disposable.
import { QubesdException } from '../lib/qubesd-client.js';
import type { AdminCaller } from './admin-caller.js';
import { notFound } from './errors.js';
import { vmHref } from './ids.js';
import { parseGetAll, parseKeyValues, parseLines, parseVmList, pickVm } from './wire.js';
import { readFeatures } from './vm-objects.js';
import type { TaskContext } from './tasks.js';

export interface VmAction {
  description: string;
  /** JSON schema of the parameters (the request body) */
  params?: Record<string, unknown>;
  run(caller: AdminCaller, dest: string, params: Record<string, unknown>, ctx: TaskContext): Promise<unknown>;
}

const single = (method: string, description: string, arg = ''): VmAction => ({
  description,
  run: async (caller, dest, _p, ctx) => {
    await caller.call(method, dest, arg, '', { signal: ctx.signal, timeoutMs: 0 });
    return null;
  },
});

/** Properties a clone never takes from its source (identity, run-time state, or set at creation). */
const NOT_CLONED = new Set(['name', 'uuid', 'qid', 'xid', 'stubdom_xid', 'start_time', 'label', 'template', 'dispid', 'backup_timestamp']);

async function newVmRef(caller: AdminCaller, name: string): Promise<{ href: string; uuid: string; name_label: string }> {
  const v = pickVm(parseVmList(await caller.call('admin.vm.List', name)), name);
  if (!v) throw notFound(`no qube ${name}`);
  return { href: vmHref(v.uuid), uuid: v.uuid, name_label: v.name };
}

async function clone(caller: AdminCaller, dest: string, params: Record<string, unknown>, ctx: TaskContext): Promise<unknown> {
  const name = String(params.name);
  const src = pickVm(parseVmList(await caller.call('admin.vm.List', dest)), dest);
  if (!src) throw notFound(`no qube ${dest}`);
  const props = parseGetAll(await caller.call('admin.vm.property.GetAll', dest));
  const label = typeof params.label === 'string' ? params.label : String(props.get('label')?.value ?? '');
  const template = props.get('template')?.value;
  const create = params.pool ? `admin.vm.CreateInPool.${src.klass}` : `admin.vm.Create.${src.klass}`;
  await caller.call(
    create,
    'dom0',
    typeof template === 'string' ? template : '',
    `name=${name} label=${label}${params.pool ? ` pool=${String(params.pool)}` : ''}`,
  );
  ctx.progress(10);
  try {
    for (const [prop, v] of props) {
      if (NOT_CLONED.has(prop) || v.isDefault) continue;
      try {
        await caller.call(
          'admin.vm.property.Set',
          name,
          prop,
          v.value === null ? '' : typeof v.value === 'boolean' ? (v.value ? 'True' : 'False') : String(v.value),
        );
      } catch (e) {
        // read-only or not applicable to the new qube: qvm-clone skips them too
        if (!(e instanceof QubesdException)) throw e;
      }
    }
    for (const tag of parseLines(await caller.call('admin.vm.tag.List', dest))) {
      if (!tag.startsWith('created-by-')) await caller.call('admin.vm.tag.Set', name, tag);
    }
    for (const [f, value] of Object.entries(await readFeatures(caller, dest))) await caller.call('admin.vm.feature.Set', name, f, value);
    try {
      const rules = await caller.call('admin.vm.firewall.Get', dest);
      await caller.call('admin.vm.firewall.Set', name, '', rules);
    } catch (e) {
      if (!(e instanceof QubesdException)) throw e;
    }
    ctx.progress(30);
    const volumes = parseLines(await caller.call('admin.vm.volume.List', name));
    for (const [i, vol] of volumes.entries()) {
      const info = parseKeyValues(await caller.call('admin.vm.volume.Info', name, vol));
      if (info.save_on_stop !== true) continue;
      const token = await caller.call('admin.vm.volume.CloneFrom', dest, vol);
      await caller.call('admin.vm.volume.CloneTo', name, vol, token, { signal: ctx.signal, timeoutMs: 0 });
      ctx.progress(30 + (70 * (i + 1)) / volumes.length);
    }
  } catch (e) {
    await caller.call('admin.vm.Remove', name).catch(() => undefined);
    throw e;
  }
  return newVmRef(caller, name);
}

async function createDisposable(caller: AdminCaller, dest: string): Promise<unknown> {
  const created = await caller.call('admin.vm.CreateDisposable', dest, '', 'uuid');
  const uuid = created.replace(/^uuid:/, '').trim();
  const v = pickVm(parseVmList(await caller.call('admin.vm.List', `uuid:${uuid}`)), `uuid:${uuid}`);
  return { href: vmHref(uuid), uuid, name_label: v?.name ?? null };
}

export const VM_ACTIONS: Record<string, VmAction> = {
  start: single('admin.vm.Start', 'start the qube'),
  clean_shutdown: single('admin.vm.Shutdown', 'shut the qube down cleanly and wait until it is halted', 'wait'),
  hard_shutdown: single('admin.vm.Kill', 'stop the qube at once'),
  clean_reboot: {
    description: 'shut down cleanly, then start again',
    run: async (caller, dest, _p, ctx) => {
      await caller.call('admin.vm.Shutdown', dest, 'wait', '', { signal: ctx.signal, timeoutMs: 0 });
      ctx.progress(50);
      await caller.call('admin.vm.Start', dest, '', '', { signal: ctx.signal, timeoutMs: 0 });
      return null;
    },
  },
  hard_reboot: {
    description: 'stop at once, then start again',
    run: async (caller, dest, _p, ctx) => {
      await caller.call('admin.vm.Kill', dest, '', '', { signal: ctx.signal });
      ctx.progress(50);
      await caller.call('admin.vm.Start', dest, '', '', { signal: ctx.signal, timeoutMs: 0 });
      return null;
    },
  },
  pause: single('admin.vm.Pause', 'pause the qube'),
  unpause: single('admin.vm.Unpause', 'unpause the qube'),
  suspend: single('admin.vm.Suspend', 'suspend the qube'),
  resume: single('admin.vm.Resume', 'resume a suspended qube'),
  clone: {
    description: 'a copy of the qube (as qvm-clone): properties, tags, features, firewall and persistent volumes',
    params: {
      type: 'object',
      required: ['name'],
      additionalProperties: false,
      properties: {
        name: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_.-]{0,30}$' },
        label: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
        pool: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
      },
    },
    run: (caller, dest, params, ctx) => clone(caller, dest, params, ctx),
  },
  create_disposable: {
    description: 'a new disposable qube from this disposable template',
    run: (caller, dest) => createDisposable(caller, dest),
  },
};
