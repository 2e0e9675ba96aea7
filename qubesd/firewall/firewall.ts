// A qube's firewall as Qubes keeps it: rules loaded from the qube's
// firewall.xml the first time they are needed (the default "accept all" when
// there is no file), then kept in memory; replacing them writes the file and
// fires `firewall-changed` on the qube. A rule with `expire=` disappears at
// that time: Qubes re-reads and re-writes the file then (dropping the
// expired rules) and fires `firewall-changed` again.
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Vm } from '../model/app.js';
import { defaultRules, FirewallFileError, parseFirewallXml, replaceFile, serializeFirewallXml } from './file.js';
import { apiRule, isExpired, type Rule } from './rule.js';
import { systemErrorWords } from '../../lib/system-error.js';

export const FIREWALL_FILE = 'firewall.xml';

/** setTimeout's longest delay; later expiries are reached in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class Firewall {
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    readonly vm: Vm,
    readonly path: string,
    private current: Rule[],
  ) {}

  /** The rules from the file, or the default; throws FirewallFileError on a bad file. */
  static load(vm: Vm, dir: string): Firewall {
    const path = join(dir, FIREWALL_FILE);
    return new Firewall(vm, path, readRules(path));
  }

  /** A firewall holding these rules in memory, not (yet) in its file. */
  static withRules(vm: Vm, dir: string, rules: readonly Rule[]): Firewall {
    return new Firewall(vm, join(dir, FIREWALL_FILE), [...rules]);
  }

  get rules(): readonly Rule[] {
    return this.current;
  }

  /** admin.vm.firewall.Get: one API line per rule that has not expired. */
  apiText(nowMs = Date.now()): string {
    let out = '';
    for (const r of this.current) {
      const line = apiRule(r, nowMs);
      if (line !== null) out += line + '\n';
    }
    return out;
  }

  /**
   * Replace the rules and save them (admin.vm.firewall.Set). The in-memory
   * rules change only once the file is written, so a failed write leaves
   * both as they were. Concurrent calls are applied in call order.
   */
  replace(rules: readonly Rule[]): Promise<void> {
    return this.serialized(() => this.save([...rules]));
  }

  /** Stop the expiry timer (the qube is gone or the daemon stops). */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private serialized(fn: () => Promise<void>): Promise<void> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => {});
    return run;
  }

  private async save(rules: Rule[]): Promise<void> {
    const now = Date.now();
    // A qube always has its directory in Qubes; a store restored without the
    // per-qube files may lack it, and the rules must not be refused for that.
    await mkdir(dirname(this.path), { recursive: true, mode: 0o775 });
    await replaceFile(this.path, serializeFirewallXml(rules, now));
    this.current = rules;
    this.vm.app.events.fire(this.vm.name, 'firewall-changed', []);
    this.schedule(rules, now);
  }

  private schedule(rules: readonly Rule[], now: number): void {
    this.close();
    let next: number | null = null;
    for (const r of rules) {
      if (r.expire === undefined || isExpired(r, now)) continue;
      const at = Number(r.expire) * 1000;
      if (next === null || at < next) next = at;
    }
    if (next === null) return;
    const delay = next - now;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        if (delay > MAX_DELAY_MS) {
          this.schedule(this.current, Date.now());
          return;
        }
        void this.expire().catch(() => {
          /* the qube's directory is gone: nothing left to expire */
        });
      },
      Math.min(delay + 1, MAX_DELAY_MS),
    );
    this.timer.unref();
  }

  /** Qubes' _expire_rules: reload the file, save it again without the expired rules. */
  private expire(): Promise<void> {
    return this.serialized(async () => {
      if (this.vm.app.getVm(this.vm.name) !== this.vm) return;
      await this.save(readRules(this.path));
    });
  }
}

function readRules(path: string): Rule[] {
  let content: Buffer;
  try {
    content = readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return defaultRules();
    throw new FirewallFileError(`cannot read firewall.xml: ${systemErrorWords(e)}`);
  }
  return parseFirewallXml(content);
}

/**
 * The firewalls of the qubes of one daemon: each loaded on first use and
 * kept with its qube. Made once at daemon start (see api/services.ts).
 */
export class Firewalls {
  private readonly loaded = new WeakMap<Vm, Firewall>();

  /**
   * The firewall of a qube that has one (Qubes' QubesVM: not dom0, not a
   * RemoteVM); null otherwise.
   */
  of(vm: Vm): Firewall | null {
    const cached = this.loaded.get(vm);
    if (cached) return cached;
    const dir = vm.dirPath;
    if (dir === null) return null;
    const fw = Firewall.load(vm, dir);
    this.loaded.set(vm, fw);
    return fw;
  }

  /**
   * Qubes' Firewall.clone, for a new disposable: the template's rules, in
   * memory only (a disposable's firewall.xml is written on its first change).
   */
  clone(from: Vm, to: Vm): void {
    const src = this.of(from);
    const dir = to.dirPath;
    if (!src || dir === null) return;
    this.loaded.get(to)?.close();
    this.loaded.set(to, Firewall.withRules(to, dir, src.rules));
  }
}
