// The backups qubesd runs: admin.backup.Info/Execute/Cancel on top of the
// library (profiles, plan, writer, destinations). One BackupService per
// QubesApp; it remembers which profiles are running so that a second
// Execute of the same profile is refused and Cancel can stop one.
import type { QubesApp, Vm } from '../model/app.js';
import type { StorageManager } from '../storage/index.js';
import { lookup, setProperty } from '../model/properties.js';
import { BackupAlreadyRunningError, BackupCancelledError, QubesBackupProfileNotFoundError, QubesError, QubesException } from '../errors.js';
import type { QubeServices } from '../qrexec/run-service.js';
import {
  PassphraseCancelledError,
  ProfileError,
  ProfileMissingKeyError,
  ProfileNotFoundError,
  loadProfile,
  resolvePassphrase,
  type BackupProfile,
} from './profile.js';
import { openSource, planBackup, summaryRows } from './plan.js';
import { backupSummary } from './summary.js';
import { commandDestination, dom0PathDestination, runBackup, serviceDestination, type Destination } from './destination.js';
import type { ScryptParams } from './scrypt-file.js';
import { isSystemError, scrubSystemErrorText, systemErrorWords } from '../../lib/system-error.js';
import { streamQubeBackup, type StreamRequest } from './stream.js';

export interface BackupServiceOptions {
  profileDir: string;
  storage: StorageManager;
  services: QubeServices;
  /** override the key derivation cost (benchmarks); default: the writer's */
  scrypt?: ScryptParams;
  log?: (msg: string, extra?: Record<string, unknown>) => void;
}

/** Python's repr of a float, as Qubes sends the progress (e.g. 42.0). */
function pyFloat(n: number): string {
  const r = Math.round(n * 1e6) / 1e6;
  return Number.isInteger(r) ? r.toFixed(1) : String(r);
}

export class BackupService {
  private readonly running = new Map<string, AbortController>();

  constructor(
    private readonly app: QubesApp,
    private readonly o: BackupServiceOptions,
  ) {}

  get runningProfiles(): string[] {
    return [...this.running.keys()];
  }

  private async profile(name: string): Promise<BackupProfile> {
    try {
      return await loadProfile(name, this.o.profileDir);
    } catch (e) {
      if (e instanceof ProfileNotFoundError) throw QubesBackupProfileNotFoundError(name);
      if (e instanceof ProfileMissingKeyError) throw QubesException(`Invalid backup profile - missing '${e.key}'`);
      // named by the profile, not by its path in dom0
      if (e instanceof ProfileError) throw QubesException(`Invalid backup profile - ${name}.conf: ${e.key ? `${e.key}: ` : ''}${e.detail}`);
      throw QubesException(`Invalid backup profile - ${name}.conf cannot be read: ${systemErrorWords(e)}`);
    }
  }

  private destinationVm(profile: BackupProfile): Vm {
    const to = profile.destinationVm;
    const vm = typeof to === 'number' ? this.app.getVmByQid(to) : typeof to === 'string' ? this.app.getVm(to) : undefined;
    if (!vm) throw QubesException('Invalid destination_vm specified in backup profile');
    return vm;
  }

  /** admin.backup.Info: the summary table, limited to qubes `visible` allows.
   * `seesAll` (dom0 callers) adds the profile entries that match no qube:
   * for anyone else that would tell hidden qubes from missing ones. */
  async info(name: string, visible: (vm: Vm) => boolean, seesAll = false): Promise<string> {
    const profile = await this.profile(name);
    this.destinationVm(profile); // Qubes refuses a profile whose destination is no qube, even here
    const plan = planBackup(this.app, this.o.storage, profile);
    const rows = await summaryRows({ ...plan, qubes: plan.qubes.filter((q) => visible(q.vm)) }, this.o.storage);
    let text = backupSummary(
      rows,
      plan.notSelected.filter(visible).map((vm) => vm.name),
    );
    if (plan.dom0Skipped) text += "dom0's home directory is not included: this qubesd backs up qubes only\n";
    if (seesAll && plan.unmatched.length) text += `Profile entries matching no qube: ${plan.unmatched.join(', ')}\n`;
    return text;
  }

  /** admin.backup.Execute: resolves once the archive is complete and durable.
   * `caller` aborts when the caller goes away: as in Qubes, a backup nobody
   * waits for is cancelled. */
  async execute(name: string, caller?: AbortSignal): Promise<void> {
    if (this.running.has(name)) throw BackupAlreadyRunningError();
    const abort = new AbortController();
    this.running.set(name, abort);
    const { signal } = abort;
    const onGone = (): void => abort.abort();
    caller?.addEventListener('abort', onGone, { once: true });
    if (caller?.aborted) abort.abort();
    let lastEvent = 0;
    let lastValue = '';
    const progress = (percent: number, force = false): void => {
      const now = Date.now();
      if (!force && now - lastEvent < 1000) return; // as Qubes: at most one a second
      const value = pyFloat(percent);
      if (value === lastValue) return;
      lastEvent = now;
      lastValue = value;
      this.app.events.fire('', 'backup-progress', [
        ['backup_profile', name],
        ['progress', value],
      ]);
    };
    try {
      const profile = await this.profile(name);
      const destVm = this.destinationVm(profile);
      const passphrase = await this.passphrase(profile, name);
      if (signal.aborted) throw BackupCancelledError();
      const plan = planBackup(this.app, this.o.storage, profile);
      const opened = await openSource(this.app, this.o.storage, plan);
      let location: string;
      try {
        const dest = await this.destination(profile, destVm);
        const result = await runBackup(opened.source, dest, {
          passphrase,
          compression: profile.compression,
          signal,
          ...(this.o.scrypt ? { scrypt: this.o.scrypt } : {}),
          onProgress: (p) => {
            if (p.bytesTotal > 0) progress((100 * p.bytesDone) / p.bytesTotal);
          },
        });
        location = result.location;
      } finally {
        await opened.close();
      }
      // Only a complete backup counts: the time stamp is set after commit.
      const now = Math.floor(Date.now() / 1000);
      for (const q of plan.qubes) {
        if (this.app.getVm(q.vm.name) === q.vm) setProperty(q.vm, lookup(q.vm, 'backup_timestamp'), now);
      }
      progress(100, true);
      this.o.log?.('backup complete', { profile: name, location, qubes: plan.qubes.map((q) => q.vm.name) });
    } catch (e) {
      if (signal.aborted || e instanceof PassphraseCancelledError) {
        this.o.log?.('backup cancelled', { profile: name });
        throw BackupCancelledError();
      }
      if (e instanceof QubesError) throw e;
      this.o.log?.('backup failed', { profile: name, error: (e as Error).message });
      throw QubesException(`Backup failed: ${isSystemError(e) ? systemErrorWords(e) : scrubSystemErrorText((e as Error).message)}`);
    } finally {
      caller?.removeEventListener('abort', onGone);
      this.running.delete(name);
    }
  }

  /** admin.vm.backup.Stream: one qube's archive as a stream (backup/stream.ts). */
  stream(vm: Vm, req: StreamRequest, signal: AbortSignal): Promise<AsyncIterable<Buffer>> {
    return streamQubeBackup(this.app, this.o.storage, vm, req, signal, this.o.scrypt);
  }

  /** admin.backup.Cancel: stops a running backup; Execute then fails with
   * BackupCancelledError and no archive is left under a final name. */
  cancel(name: string): void {
    const run = this.running.get(name);
    if (!run) throw QubesException('Backup operation not running');
    run.abort();
  }

  /** Stops every running backup (daemon shutdown). */
  cancelAll(): void {
    for (const a of this.running.values()) a.abort();
  }

  private async passphrase(profile: BackupProfile, name: string): Promise<Buffer> {
    if (profile.passphraseVm !== undefined && !this.app.getVm(profile.passphraseVm)) {
      throw QubesException('Invalid backup profile - invalid passphrase_vm');
    }
    try {
      return await resolvePassphrase(profile, name, (vm, service) => this.o.services.output(vm, service));
    } catch (e) {
      if (e instanceof PassphraseCancelledError) throw e;
      throw QubesException(isSystemError(e) ? systemErrorWords(e) : scrubSystemErrorText((e as Error).message));
    }
  }

  private async destination(profile: BackupProfile, vm: Vm): Promise<Destination> {
    if (vm.isAdmin) {
      // dom0: "|command" pipes the archive into a command; anything else is
      // a directory (new file named by time stamp) or a file name.
      const path = profile.destinationPath;
      if (path.startsWith('|')) return commandDestination(path.slice(1).trim());
      try {
        return await dom0PathDestination(path);
      } catch (e) {
        throw QubesException(`ERROR: ${isSystemError(e) ? systemErrorWords(e) : scrubSystemErrorText((e as Error).message)}`);
      }
    }
    let call;
    try {
      call = this.o.services.start(vm.name, 'qubes.Backup');
    } catch (e) {
      throw QubesException(`Writing backup to VM ${vm.name} failed: ${isSystemError(e) ? systemErrorWords(e) : scrubSystemErrorText((e as Error).message)}`);
    }
    call.stdout.resume(); // the service's output is not used (Qubes sends it to /dev/null)
    return serviceDestination(call, profile.destinationPath, `VM ${vm.name}`);
  }
}
