// Why the policy refused a call, for the dispatcher's log. The policy
// daemon's protocol answers only "result=deny" (as in Qubes, the caller is
// told nothing more), so the dispatcher evaluates the same policy files with
// the same engine and system information to name the deciding rule. Only
// refused calls pay for this.
import { fetchSystemInfo } from '../../policy/daemon/system-info-source.js';
import { ruleLocation } from '../../policy/rule.js';
import { PolicyWatcher } from '../../policy/watcher.js';

export interface RefusalExplainerOptions {
  policyDir: string;
  runtimeDir: string | null;
  /** qubesd's internal socket (internal.GetSystemInfo) */
  systemInfoSocket: string;
}

export function refusalExplainer(o: RefusalExplainerOptions): (source: string, target: string, serviceAndArg: string) => Promise<string> {
  let watcher: PolicyWatcher | null = null;
  return async (source, target, serviceAndArg) => {
    watcher ??= new PolicyWatcher({ policyDir: o.policyDir, runtimeDir: o.runtimeDir, pollMs: 0 });
    const system = await fetchSystemInfo(o.systemInfoSocket);
    const plus = serviceAndArg.indexOf('+');
    const res = watcher.current().evaluate(
      {
        service: serviceAndArg.slice(0, plus),
        argument: serviceAndArg.slice(plus),
        source,
        target,
        requestedSource: null,
      },
      system,
    );
    switch (res.result) {
      case 'deny':
        return res.reason;
      case 'error':
        return res.error;
      case 'ask':
        return `the rule at ${ruleLocation(res.rule)} says ask (choices: ${res.targetsForAsk.join(', ')}) and the policy daemon's agent did not approve`;
      case 'allow':
        return `the policy daemon refused what ${ruleLocation(res.rule)} allows (a target it cannot serve, or the policy changed meanwhile)`;
    }
  };
}
