// The Admin API method table: the one place that says which calls exist and
// what each accepts. Everything else is derived from it: qubesd's dispatch and
// argument checks, the handler program names installed under
// /etc/qubes-rpc, the generated admin policy include files and docs/API.md.
//
// This module must stay free of imports: the per-call handler program loads it
// on every qrexec call, and its start-up time is measured.

/** Where the destination must point: dom0 only, anything but dom0, or either. */
export type DestRule = 'adminvm' | 'not-adminvm' | 'any';
/** true: required and non-empty; false: must be empty; null: not checked. */
export type Presence = boolean | null;
/** Policy include file family: which admin-{scope}-{ro|rwx} file grants it. */
export type Scope = 'local' | 'global' | null;

export interface MethodSpec {
  readonly name: string;
  readonly dest: DestRule;
  readonly arg: Presence;
  readonly payload: Presence;
  readonly scope: Scope;
  /** 'r', 'rw', 'rx': read, write, execute classifiers (as Qubes' decorators). */
  readonly access: string;
  /** Which qubesd socket serves it. Handler-program-only services have 'none'. */
  readonly socket: 'admin' | 'internal' | 'none';
  /** Payload may exceed the 64 KiB request limit: streamed by the handler program. */
  readonly streamed?: boolean;
  /**
   * Its OK reply follows from the model's state alone (power states included,
   * which the cache watches; no storage, files or time): qubesd may answer a
   * repeat of the same request from its reply cache until something changes
   * (qubesd/api/reply-cache.ts).
   */
  readonly cache?: boolean;
}

function m(
  name: string,
  dest: DestRule,
  arg: Presence,
  payload: Presence,
  scope: Scope,
  access: string,
  extra: Partial<Pick<MethodSpec, 'socket' | 'streamed' | 'cache'>> = {},
): MethodSpec {
  return Object.freeze({
    name,
    dest,
    arg,
    payload,
    scope,
    access,
    socket: extra.socket ?? 'admin',
    ...(extra.streamed ? { streamed: true } : {}),
    ...(extra.cache ? { cache: true } : {}),
  });
}

/** A read whose reply qubesd may cache (MethodSpec.cache). */
const CACHED = { cache: true } as const;

/** VM classes that admin.vm.Create.<class> and friends exist for. */
export const VM_CLASSES = ['AdminVM', 'AppVM', 'DispVM', 'RemoteVM', 'StandaloneVM', 'TemplateVM'] as const;
/** Device classes this dom0 serves (admin.deviceclass.List and admin.vm.device.<class>.*). */
export const DEVICE_CLASSES = ['block', 'pci'] as const;

export const METHODS: readonly MethodSpec[] = Object.freeze([
  m('admin.vmclass.List', 'adminvm', false, false, 'global', 'r', CACHED),
  m('admin.vm.List', 'any', false, false, 'global', 'r', CACHED),
  m('admin.vm.property.List', 'any', false, false, 'local', 'r', CACHED),
  m('admin.property.List', 'adminvm', false, false, 'global', 'r', CACHED),
  m('admin.vm.property.Get', 'any', true, false, 'local', 'r', CACHED),
  m('admin.property.Get', 'adminvm', true, false, 'global', 'r', CACHED),
  m('admin.vm.property.GetAll', 'any', false, false, 'local', 'r', CACHED),
  m('admin.property.GetAll', 'adminvm', false, false, 'global', 'r', CACHED),
  m('admin.vm.property.GetDefault', 'any', true, false, 'local', 'r', CACHED),
  m('admin.property.GetDefault', 'adminvm', true, false, 'global', 'r', CACHED),
  m('admin.vm.property.Set', 'any', true, null, 'local', 'rw'),
  m('admin.property.Set', 'adminvm', true, null, 'global', 'rw'),
  m('admin.vm.property.Help', 'any', true, false, 'local', 'r', CACHED),
  m('admin.property.Help', 'adminvm', true, false, 'global', 'r', CACHED),
  m('admin.vm.property.Reset', 'any', true, false, 'local', 'rw'),
  m('admin.property.Reset', 'adminvm', true, false, 'global', 'rw'),
  m('admin.vm.volume.List', 'any', false, false, 'local', 'r'),
  m('admin.vm.volume.Info', 'any', true, false, 'local', 'r'),
  m('admin.vm.volume.ListSnapshots', 'any', true, false, 'local', 'r'),
  m('admin.vm.volume.Revert', 'any', true, true, 'local', 'rw'),
  m('admin.vm.volume.CloneFrom', 'any', true, false, 'local', 'rw'),
  m('admin.vm.volume.CloneTo', 'any', true, true, 'local', 'rw'),
  m('admin.vm.volume.Resize', 'any', true, true, 'local', 'rw'),
  m('admin.vm.volume.Clear', 'any', true, false, 'local', 'rw'),
  m('admin.vm.volume.Set.revisions_to_keep', 'any', true, true, 'local', 'rw'),
  m('admin.vm.volume.Set.rw', 'any', true, true, 'local', 'rw'),
  m('admin.vm.volume.Set.ephemeral', 'any', true, true, 'local', 'rw'),
  // Our extension: the volume's data, streamed by qubesd (lib/volume-export.ts).
  // It reads what the qube stores, not just its settings, so it is granted
  // with the rwx family (as Import is), not with the read-only one.
  m('admin.vm.volume.Export', 'any', true, false, 'local', 'rx'),
  m('admin.vm.tag.List', 'any', false, false, 'local', 'r', CACHED),
  m('admin.vm.tag.Get', 'any', true, false, 'local', 'r', CACHED),
  m('admin.vm.tag.Set', 'any', true, false, 'local', 'rw'),
  m('admin.vm.tag.Remove', 'any', true, false, 'local', 'rw'),
  m('admin.vm.Console', 'any', false, false, 'local', 'rw'),
  m('admin.pool.List', 'adminvm', false, false, 'global', 'r'),
  m('admin.pool.ListDrivers', 'adminvm', false, false, 'global', 'r'),
  m('admin.pool.Info', 'adminvm', true, false, 'global', 'r'),
  m('admin.pool.UsageDetails', 'adminvm', true, false, 'global', 'r'),
  m('admin.pool.Add', 'adminvm', true, true, 'global', 'rw'),
  m('admin.pool.Remove', 'adminvm', true, false, 'global', 'rw'),
  m('admin.pool.volume.List', 'adminvm', true, false, 'global', 'r'),
  m('admin.pool.Set.revisions_to_keep', 'adminvm', true, true, 'global', 'rw'),
  m('admin.pool.Set.ephemeral_volatile', 'adminvm', true, true, 'global', 'rw'),
  m('admin.label.List', 'adminvm', false, false, 'global', 'r', CACHED),
  m('admin.label.Get', 'adminvm', true, false, 'global', 'r', CACHED),
  m('admin.label.Index', 'adminvm', true, false, 'global', 'r', CACHED),
  m('admin.label.Create', 'adminvm', true, true, 'global', 'rw'),
  m('admin.label.Remove', 'adminvm', true, false, 'global', 'rw'),
  m('admin.vm.Start', 'any', false, false, 'local', 'rx'),
  m('admin.vm.Shutdown', 'any', null, false, 'local', 'rx'),
  m('admin.vm.Pause', 'any', false, false, 'local', 'rx'),
  m('admin.vm.Unpause', 'any', false, false, 'local', 'rx'),
  m('admin.vm.Suspend', 'any', false, false, 'local', 'rx'),
  m('admin.vm.Resume', 'any', false, false, 'local', 'rx'),
  m('admin.vm.Kill', 'any', false, false, 'local', 'rx'),
  m('admin.Events', 'any', false, false, 'global', 'r'),
  m('admin.vm.feature.List', 'any', false, false, 'local', 'r', CACHED),
  m('admin.vm.feature.Get', 'any', true, false, 'local', 'r', CACHED),
  m('admin.vm.feature.CheckWithTemplate', 'any', true, false, 'local', 'r', CACHED),
  m('admin.vm.feature.CheckWithNetvm', 'any', true, false, 'local', 'r', CACHED),
  m('admin.vm.feature.CheckWithAdminVM', 'any', true, false, 'local', 'r', CACHED),
  m('admin.vm.feature.CheckWithTemplateAndAdminVM', 'any', true, false, 'local', 'r', CACHED),
  m('admin.vm.feature.Remove', 'any', true, false, 'local', 'rw'),
  m('admin.vm.feature.Set', 'any', true, null, 'local', 'rw'),
  m('admin.vm.Create.AdminVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.Create.AppVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.Create.DispVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.Create.RemoteVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.Create.StandaloneVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.Create.TemplateVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.CreateInPool.AdminVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.CreateInPool.AppVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.CreateInPool.DispVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.CreateInPool.RemoteVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.CreateInPool.StandaloneVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.CreateInPool.TemplateVM', 'adminvm', null, null, 'global', 'rw'),
  m('admin.vm.CreateDisposable', 'any', null, null, 'global', 'rw'),
  m('admin.vm.Remove', 'any', false, false, 'global', 'rw'),
  m('admin.deviceclass.List', 'adminvm', false, false, 'global', 'r'),
  m('admin.vm.device.block.Available', 'any', null, false, 'local', 'r'),
  m('admin.vm.device.pci.Available', 'any', null, false, 'local', 'r'),
  m('admin.vm.device.block.Assigned', 'any', null, false, 'local', 'r'),
  m('admin.vm.device.pci.Assigned', 'any', null, false, 'local', 'r'),
  m('admin.vm.device.block.Attached', 'any', null, false, 'local', 'r'),
  m('admin.vm.device.pci.Attached', 'any', null, false, 'local', 'r'),
  m('admin.vm.device.block.Assign', 'any', true, true, 'local', 'rw'),
  m('admin.vm.device.pci.Assign', 'any', true, true, 'local', 'rw'),
  m('admin.vm.device.block.Unassign', 'any', true, false, 'local', 'rw'),
  m('admin.vm.device.pci.Unassign', 'any', true, false, 'local', 'rw'),
  m('admin.vm.device.block.Attach', 'any', true, null, 'local', 'rx'),
  m('admin.vm.device.pci.Attach', 'any', true, null, 'local', 'rx'),
  m('admin.vm.device.block.Detach', 'any', true, false, 'local', 'rx'),
  m('admin.vm.device.pci.Detach', 'any', true, false, 'local', 'rx'),
  m('admin.vm.device.block.Set.assignment', 'any', true, true, 'local', 'rw'),
  m('admin.vm.device.pci.Set.assignment', 'any', true, true, 'local', 'rw'),
  m('admin.vm.device.denied.List', 'any', false, false, 'local', 'r'),
  m('admin.vm.device.denied.Add', 'any', false, null, 'local', 'rw'),
  m('admin.vm.device.denied.Remove', 'any', false, null, 'local', 'rw'),
  m('admin.vm.firewall.Get', 'not-adminvm', false, false, 'local', 'r'),
  m('admin.vm.firewall.Set', 'not-adminvm', false, true, 'local', 'rw'),
  m('admin.vm.firewall.Reload', 'not-adminvm', false, false, 'local', 'rx'),
  m('admin.backup.Execute', 'adminvm', true, false, 'global', 'rx'),
  m('admin.backup.Cancel', 'adminvm', true, false, 'global', 'rx'),
  m('admin.backup.Info', 'adminvm', true, false, 'local', 'r'),
  // Our extension: the destination qube's backup archive as the reply
  // (payload: passphrase=, compression=); like Export, it reads the qube's data.
  m('admin.vm.backup.Stream', 'not-adminvm', false, true, 'local', 'rx'),
  m('admin.vm.Stats', 'any', false, false, 'global', 'r'),
  m('admin.vm.CurrentState', 'any', false, false, 'local', 'r'),
  m('admin.vm.notes.Get', 'not-adminvm', false, false, 'local', 'r'),
  m('admin.vm.notes.Set', 'not-adminvm', false, true, 'local', 'rw'),
  m('internal.GetSystemInfo', 'adminvm', false, false, null, 'r', { socket: 'internal', cache: true }),
  m('internal.vm.volume.ImportBegin', 'any', true, null, 'local', 'rw', { socket: 'internal' }),
  m('internal.vm.volume.ImportEnd', 'any', true, true, null, 'rw', { socket: 'internal' }),
  m('internal.SuspendPre', 'adminvm', false, false, null, 'rx', { socket: 'internal' }),
  m('internal.SuspendPost', 'adminvm', false, false, null, 'rx', { socket: 'internal' }), // Services that Qubes implements as programs under /etc/qubes-rpc rather than
  // as qubesd methods: our handler program serves them by streaming the payload
  // into a file qubesd prepared (internal.vm.volume.ImportBegin/End).
  m('admin.vm.volume.Import', 'not-adminvm', true, null, 'local', 'rw', { socket: 'none', streamed: true }),
  m('admin.vm.volume.ImportWithSize', 'not-adminvm', true, null, 'local', 'rw', { socket: 'none', streamed: true }),
]);

const BY_NAME: ReadonlyMap<string, MethodSpec> = new Map(METHODS.map((s) => [s.name, s]));

export function lookupMethod(name: string): MethodSpec | undefined {
  return BY_NAME.get(name);
}

/** The admin policy include file that grants a method, as Qubes names them.
 * internal.* methods are dom0's own (qubesd.internal.sock): never in an include. */
export function policyInclude(spec: MethodSpec): string | null {
  if (spec.scope === null || spec.socket === 'internal') return null;
  return `admin-${spec.scope}-${spec.access.length > 1 ? 'rwx' : 'ro'}`;
}
