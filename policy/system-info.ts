// The system information the engine evaluates against: the JSON that qubesd
// answers to `internal.GetSystemInfo`, plus a lookup view in which every
// domain can also be found as "uuid:<uuid>" (as the reference does).

export interface SystemInfoDomain {
  tags: string[];
  type: string;
  template_for_dispvms: boolean;
  default_dispvm: string | null;
  power_state: string;
  icon?: string;
  label?: string;
  guivm?: string | null;
  uuid?: string | null;
  /** a truthy value hides the qube from the list offered by `ask` */
  internal?: string | boolean | null;
  relayvm?: string | null;
  transport_rpc?: string | null;
  [key: string]: unknown;
}

/** The JSON of qubesd's `internal.GetSystemInfo`. */
export interface SystemInfo {
  domains: Record<string, SystemInfoDomain>;
}

export interface DomainEntry {
  name: string;
  info: SystemInfoDomain;
}

/** Domains by name and by "uuid:<uuid>". */
export class SystemView {
  readonly byKey = new Map<string, DomainEntry>();
  /** names in the order of the JSON object (the reference iterates them so) */
  readonly names: string[] = [];

  constructor(readonly raw: SystemInfo) {
    const domains = raw && typeof raw === 'object' ? raw.domains : undefined;
    if (!domains || typeof domains !== 'object') throw new Error('system information has no "domains" object');
    for (const [name, info] of Object.entries(domains)) {
      const entry = { name, info };
      this.byKey.set(name, entry);
      this.names.push(name);
    }
    for (const entry of [...this.byKey.values()]) {
      const uuid = entry.info.uuid;
      if (typeof uuid === 'string') this.byKey.set('uuid:' + uuid, entry);
    }
  }

  get(key: string): DomainEntry | undefined {
    return this.byKey.get(key);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }
}

const views = new WeakMap<SystemInfo, SystemView>();

/** The (cached) lookup view of a system information object. */
export function systemView(info: SystemInfo): SystemView {
  let view = views.get(info);
  if (!view) {
    view = new SystemView(info);
    views.set(info, view);
  }
  return view;
}
