// Where the policy daemon gets the system information it evaluates against:
// qubesd's `internal.GetSystemInfo`, asked afresh for every request (through
// lib/qubesd-client.ts, the one client of qubesd's protocol), or a JSON file
// for tests and tools. The dispatcher's refusal explainer asks the same way.
import { readFileSync } from 'node:fs';
import { call } from '../../lib/qubesd-client.js';
import type { SystemInfo } from '../system-info.js';

/** Reads qubesd's `internal.GetSystemInfo` over its internal socket. */
export async function fetchSystemInfo(socketPath: string): Promise<SystemInfo> {
  const text = await call(socketPath, { method: 'internal.GetSystemInfo', dest: 'dom0' });
  return JSON.parse(text) as SystemInfo;
}

/** The daemon's source of system information: qubesd's internal socket, or else a file. */
export function systemInfoSource(o: { socket?: string; file?: string }): () => Promise<SystemInfo> {
  if (o.socket) {
    const socket = o.socket;
    return () => fetchSystemInfo(socket);
  }
  const file = o.file ?? '';
  return () => Promise.resolve(JSON.parse(readFileSync(file, 'utf8')) as SystemInfo);
}
