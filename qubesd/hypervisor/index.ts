// Entry point for qubesd: pick and build the hypervisor backend from the
// command line (`--backend sim|libvirt`, `--libvirt-uri URI`,
// `--libvirt-socket PATH`); sim is the default.

import type { HypervisorBackend } from './backend.js';
import { LibvirtBackend, type LibvirtBackendOptions } from './libvirt-backend.js';
import { SimBackend, type SimOptions } from './sim.js';

export type BackendConfig = ({ backend: 'sim' } & SimOptions) | ({ backend: 'libvirt' } & LibvirtBackendOptions);

export const DEFAULT_LIBVIRT_URI = 'qemu:///system';

export function createBackend(config: BackendConfig): HypervisorBackend {
  if (config.backend === 'libvirt') {
    const { backend: _b, ...opts } = config;
    return new LibvirtBackend(opts);
  }
  const { backend: _b, ...opts } = config;
  return new SimBackend(opts);
}

/** Builds a BackendConfig from the parsed option values of bin/qubesd. */
export function backendConfigFromOptions(o: { backend?: string; libvirtUri?: string; libvirtSocket?: string; simStateFile?: string }): BackendConfig {
  const backend = o.backend ?? 'sim';
  if (backend === 'sim') return { backend: 'sim', ...(o.simStateFile ? { stateFile: o.simStateFile } : {}) };
  if (backend === 'libvirt') {
    return { backend: 'libvirt', uri: o.libvirtUri ?? DEFAULT_LIBVIRT_URI, ...(o.libvirtSocket ? { socket: o.libvirtSocket } : {}) };
  }
  throw new TypeError(`unknown hypervisor backend ${JSON.stringify(backend)} (use sim or libvirt)`);
}

export type { HypervisorBackend, PowerState, LifecycleEvent, DomainStatus, DomainStats } from './backend.js';
export type { DomainSpec, DiskSpec, NetworkSpec, VirtMode } from './domain-xml.js';
