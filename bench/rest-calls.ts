// The Admin API calls behind one answer of the REST collection bench, made
// straight on qubesd's socket through lib/qubesd-client.ts (replies decoded, as the
// gateway decodes them): `list` is the
// one admin.vm.List that GET /vms?fields=name_label,power_state needs,
// `list+getall` adds admin.vm.property.GetAll of every listed qube (what a
// field outside the list, such as memory, needs). Both the direct client
// (rest-direct.ts) and the floor gateway (rest-floor-gateway.ts) make them.
import pLimit from 'p-limit';
import { call } from '../lib/qubesd-client.js';

export type DirectMode = 'list' | 'list+getall';

/** as the gateway: at most 64 connections to qubesd at once, process-wide */
const connections = pLimit(64);

export function isDirectMode(s: string | undefined): s is DirectMode {
  return s === 'list' || s === 'list+getall';
}

export async function directCalls(socket: string, mode: DirectMode): Promise<void> {
  const list = await connections(() => call(socket, { method: 'admin.vm.List', dest: 'dom0' }));
  if (mode !== 'list+getall') return;
  const names = list
    .split('\n')
    .filter(Boolean)
    .map((l) => l.slice(0, l.indexOf(' ')));
  await Promise.all(names.map((name) => connections(() => call(socket, { method: 'admin.vm.property.GetAll', dest: name }))));
}
