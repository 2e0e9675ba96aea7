// The engine as other parts of the project use it: load a policy directory,
// evaluate requests against qubesd's system information, and answer the
// questions qubesd's admin extension asks (which qubes and events a
// management qube may see).

import { PolicyEvaluator, type PolicyRequest, type Resolution } from './evaluator.js';
import { DEFAULT_LEGACY_DIR, loadPolicy } from './loader.js';
import type { SystemInfo } from './system-info.js';

export interface EngineOptions {
  /** e.g. /etc/qubes/policy.d */
  policyDir: string;
  /** e.g. /run/qubes/policy.d; its files hide same-named files of policyDir */
  runtimeDir?: string | null;
  /** read by `!compat-4.0`; default /etc/qubes-rpc/policy */
  legacyDir?: string | null;
}

export class PolicyEngine {
  private constructor(
    readonly policy: PolicyEvaluator,
    /** files and directories read (change detection) */
    readonly sources: readonly string[],
    readonly options: EngineOptions,
  ) {}

  /** Loads the policy; throws AccessDenied / PolicySyntaxError (with file:line). */
  static load(opts: EngineOptions): PolicyEngine {
    const loaded = loadPolicy({ policyDir: opts.policyDir, runtimeDir: opts.runtimeDir ?? null, legacyDir: opts.legacyDir ?? DEFAULT_LEGACY_DIR });
    return new PolicyEngine(new PolicyEvaluator(loaded.rules, loaded.warnings), loaded.sources, opts);
  }

  evaluate(req: PolicyRequest, system: SystemInfo): Resolution {
    return this.policy.evaluate(req, system);
  }

  /**
   * Whether the policy allows a call outright (`ask` counts as not allowed:
   * the question must not be put to a user here). Used by qubesd to filter
   * `admin.vm.List` and `admin.Events` for management qubes.
   */
  allows(service: string, argument: string, source: string, target: string, system: SystemInfo): boolean {
    return this.policy.evaluate({ service, argument, source, target }, system).result === 'allow';
  }

  /** Filter for `admin.vm.List` called by `caller` with argument `arg` ('' usually). */
  vmListFilter(caller: string, arg: string, system: SystemInfo): (vmName: string) => boolean {
    return (vm) => this.allows('admin.vm.List', '+' + arg, caller, vm, system);
  }

  /**
   * Filter for `admin.Events` called by `caller`: an event about `subject`
   * (a qube name, or null for events of the whole system, which are checked
   * against @adminvm). Colons of the event name become '_', as in Qubes.
   */
  eventsFilter(caller: string, system: SystemInfo): (event: string, subject: string | null) => boolean {
    return (event, subject) => this.allows('admin.Events', '+' + event.replaceAll(':', '_'), caller, subject ?? '@adminvm', system);
  }
}
