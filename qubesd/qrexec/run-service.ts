// qubesd calling a qrexec service in a qube, as Qubes' vm.run_service does
// (the backup's qubes.Backup destination and qubes.BackupPassphrase source).
// Such calls come from dom0 itself and are not subject to the policy.
//
// Where the service runs:
// - dom0: its entry in dom0's service directories (/etc/qubes-rpc), started
//   the way our qrexec dispatcher starts a service;
// - any other qube: the qube's qrexec agent. This stack has no agent inside
//   real guests; the simulator stands one in with a directory per qube
//   (<guestServicesDir>/<qube>/<service>), so that what a qube would answer
//   can be installed and tested. Without that directory the call fails with
//   a clear error instead of pretending.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { findEntry, startService, type RunningService } from '../../lib/service-exec.js';

export interface QubeServicesOptions {
  /** dom0's service directories, searched in order */
  dom0Dirs: readonly string[];
  /** per-qube service directories standing in for guests' qrexec agents */
  guestServicesDir?: string | null;
  log?: (line: string) => void;
}

export class QubeServiceError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'QubeServiceError';
  }
}

export type { RunningService };

export class QubeServices {
  constructor(private readonly o: QubeServicesOptions) {}

  private dirsFor(qube: string): string[] {
    if (qube === 'dom0') return [...this.o.dom0Dirs];
    const root = this.o.guestServicesDir;
    if (!root) throw new QubeServiceError(`cannot call services in ${qube}: no qrexec agent is reachable from this dom0`);
    const dir = join(root, qube);
    try {
      if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    } catch {
      throw new QubeServiceError(`cannot call services in ${qube}: its qrexec agent is not available`);
    }
    return [dir];
  }

  /** Starts `service` (with its "+argument" if any) in `qube`, called by dom0. */
  start(qube: string, serviceWithArg: string): RunningService {
    const plus = serviceWithArg.indexOf('+');
    const service = plus < 0 ? serviceWithArg : serviceWithArg.slice(0, plus);
    const arg = plus < 0 ? '' : serviceWithArg.slice(plus + 1);
    const entry = findEntry(this.dirsFor(qube), service, arg);
    if (!entry) throw new QubeServiceError(`service ${serviceWithArg} does not exist in ${qube}`);
    return startService(entry, { service, arg, source: 'dom0', targetType: 'name', target: qube }, (line) =>
      this.o.log?.(`${qube}:${serviceWithArg}: ${line}`),
    );
  }

  /** Runs a service to completion with no input; resolves with its output,
   * rejects when it cannot be started or exits with a non-zero status. */
  async output(qube: string, serviceWithArg: string, limit = 65536): Promise<Buffer> {
    const s = this.start(qube, serviceWithArg);
    s.stdin.end();
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of s.stdout) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        s.kill();
        throw new QubeServiceError(`${serviceWithArg} in ${qube} answered more than ${limit} bytes`);
      }
      parts.push(chunk as Buffer);
    }
    const status = await s.exit;
    if (status !== 0) throw new QubeServiceError(`${serviceWithArg} in ${qube} failed with exit status ${status}`);
    return Buffer.concat(parts);
  }
}
