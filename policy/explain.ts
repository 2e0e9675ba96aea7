// `qubes-policy explain`: for one request, the rule that decides it (file and
// line) and, for every rule before it, the first reason it did not match.

import { readFileSync } from 'node:fs';
import { parseArgs, required } from './args.js';
import { AccessDenied } from './errors.js';
import { checkRequest, type CheckedRequest, type PolicyRequest, type Resolution } from './evaluator.js';
import { PolicyEngine } from './policy-engine.js';
import { ruleLocation, type Rule } from './rule.js';
import { systemView, type SystemInfo } from './system-info.js';

export interface RuleVerdict {
  rule: Rule;
  location: string;
  /** null for the deciding rule */
  whyNot: string | null;
}

export interface Explanation {
  /** null when the request itself is invalid */
  request: CheckedRequest | null;
  resolution: Resolution;
  /** the rules looked at, in order, up to and including the deciding one */
  rules: RuleVerdict[];
}

function describe(tokenText: string): string {
  return tokenText === '*' ? 'any qube (*)' : tokenText;
}

/** Why a rule does not match a request, or null when it does. */
export function whyNot(rule: Rule, req: CheckedRequest): string | null {
  if (rule.service !== null && rule.service !== req.service) return `service differs: rule is for ${rule.service}, request is ${req.service}`;
  if (rule.argument !== null && rule.argument !== req.argument) return `argument differs: rule is for ${rule.argument}, request has ${req.argument}`;
  try {
    if (!rule.sourceMatch({ kind: 'name', text: req.source }, null, req.view)) {
      return `source ${req.source} does not match ${describe(rule.source.text)}`;
    }
    if (!rule.targetMatch(req.target, req.source, req.view)) return `target ${req.target.text} does not match ${describe(rule.target.text)}`;
  } catch (err) {
    if (err instanceof AccessDenied) return `cannot be matched: ${err.message}`;
    throw err;
  }
  return null;
}

export function explain(engine: PolicyEngine, req: PolicyRequest, system: SystemInfo): Explanation {
  const resolution = engine.evaluate(req, system);
  let checked: CheckedRequest;
  try {
    checked = checkRequest(req, systemView(system), []);
  } catch {
    return { request: null, resolution, rules: [] };
  }
  const rules: RuleVerdict[] = [];
  for (const rule of engine.policy.rules) {
    const reason = whyNot(rule, checked);
    rules.push({ rule, location: ruleLocation(rule), whyNot: reason });
    if (reason === null || (resolution.rule && rule.index === resolution.rule.index)) break;
  }
  return { request: checked, resolution, rules };
}

function verdictLine(res: Resolution): string {
  switch (res.result) {
    case 'allow':
      return `allow, target ${res.target}${res.user ? `, user ${res.user}` : ''}${res.autostart ? '' : ', no autostart'}`;
    case 'ask':
      return `ask, choices: ${res.targetsForAsk.join(', ')}${res.defaultTarget ? ` (default ${res.defaultTarget})` : ''}`;
    case 'deny':
      return `deny: ${res.reason}`;
    case 'error':
      return `refused (${res.errorType}): ${res.error}`;
  }
}

export async function explainMain(argv: string[]): Promise<number> {
  const a = parseArgs(argv, ['policy-dir', 'runtime-dir', 'legacy-dir', 'system-info', 'service', 'argument', 'source', 'target', 'requested-source']);
  const engine = PolicyEngine.load({
    policyDir: required(a, 'policy-dir'),
    runtimeDir: a.options.get('runtime-dir') ?? null,
    legacyDir: a.options.get('legacy-dir') ?? null,
  });
  const system = JSON.parse(readFileSync(required(a, 'system-info'), 'utf8')) as SystemInfo;
  const req: PolicyRequest = {
    service: required(a, 'service'),
    argument: a.options.get('argument') ?? '',
    source: required(a, 'source'),
    target: a.options.get('target') ?? '',
    requestedSource: a.options.get('requested-source') ?? null,
  };
  const ex = explain(engine, req, system);
  const out: string[] = [`request: ${req.service}${ex.request?.argument ?? req.argument} from ${req.source} to ${req.target || '@default'}`];
  for (const v of ex.rules) {
    if (v.whyNot !== null) out.push(`  ${v.location}: ${v.rule.text}\n      skipped: ${v.whyNot}`);
    else out.push(`  ${v.location}: ${v.rule.text}\n      MATCHES`);
  }
  if (ex.request !== null && ex.resolution.rule === null && ex.resolution.result === 'deny') out.push('  no rule matches');
  out.push(`result: ${verdictLine(ex.resolution)}`);
  if (ex.resolution.rule) out.push(`decided by: ${ruleLocation(ex.resolution.rule)}`);
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
