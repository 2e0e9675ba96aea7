// Evaluation of a request against a policy's rules (PolicyEvaluator; loading
// them from files is policy-engine.ts's): the first matching rule decides.
// Rules are indexed by (service, argument) so that only the rules that can
// apply to a service are looked at, in policy order; the list of choices for
// `ask` is collected from the same candidates.

import { AccessDenied, EvaluationError, RequestError } from './errors.js';
import { pyRepr } from '../lib/py-repr.js';
import { ruleLocation, type Rule } from './rule.js';
import { SystemView, systemView, type SystemInfo } from './system-info.js';
import { defaultDispvmTemplate, expandTarget, isDom0, parseToken, type Operand } from './tokens.js';

export interface PolicyRequest {
  service: string;
  /** the argument with its leading '+'; '' or '+' for none */
  argument: string;
  source: string;
  /** '' means @default */
  target: string;
  /** qrexec-client-vm's SOURCE_QUBE, for calls relayed on behalf of a RemoteVM */
  requestedSource?: string | null;
}

/** A request after validation: what the rules are matched against. */
export interface CheckedRequest {
  service: string;
  argument: string;
  /** the requested source when the call is relayed, else the caller */
  source: string;
  target: Operand;
  requestedSource: string | null;
  view: SystemView;
}

interface Outcome {
  warnings: string[];
}
export interface AllowResolution extends Outcome {
  result: 'allow';
  rule: Rule;
  request: CheckedRequest;
  target: string;
  user: string | null;
  autostart: boolean;
  notify: boolean;
}
export interface AskResolution extends Outcome {
  result: 'ask';
  rule: Rule;
  request: CheckedRequest;
  /** sorted */
  targetsForAsk: string[];
  defaultTarget: string | null;
  user: string | null;
  autostart: boolean;
  notify: boolean;
}
export interface DenyResolution extends Outcome {
  result: 'deny';
  rule: Rule | null;
  reason: string;
  notify: boolean;
}
export interface ErrorResolution extends Outcome {
  result: 'error';
  /** 'request': the request itself is invalid; 'evaluate': the policy cannot decide it */
  stage: 'request' | 'evaluate';
  errorType: string;
  error: string;
  rule: Rule | null;
  notify: boolean;
  cause: AccessDenied;
}
export type Resolution = AllowResolution | AskResolution | DenyResolution | ErrorResolution;

const EMPTY: readonly Rule[] = [];
const CANDIDATE_CACHE_LIMIT = 20000;

/** Rules by (service, argument), keeping policy order within every list. */
class RuleIndex {
  private readonly exact = new Map<string, Map<string, Rule[]>>();
  private readonly anyArgument = new Map<string, Rule[]>();
  private readonly anyService: Rule[] = [];
  private readonly cache = new Map<string, readonly Rule[]>();

  constructor(rules: readonly Rule[]) {
    for (const r of rules) {
      if (r.service === null) this.anyService.push(r);
      else if (r.argument === null) push(this.anyArgument, r.service, r);
      else {
        let m = this.exact.get(r.service);
        if (!m) this.exact.set(r.service, (m = new Map()));
        push(m, r.argument, r);
      }
    }
  }

  /** Every rule that applies to this service and argument, in policy order. */
  candidates(service: string, argument: string): readonly Rule[] {
    const key = service + '\0' + argument;
    let list = this.cache.get(key);
    if (list) return list;
    list = merge(this.exact.get(service)?.get(argument) ?? EMPTY, this.anyArgument.get(service) ?? EMPTY, this.anyService);
    if (this.cache.size >= CANDIDATE_CACHE_LIMIT) this.cache.clear();
    this.cache.set(key, list);
    return list;
  }
}

function push<K>(m: Map<K, Rule[]>, k: K, r: Rule): void {
  const l = m.get(k);
  if (l) l.push(r);
  else m.set(k, [r]);
}

function merge(a: readonly Rule[], b: readonly Rule[], c: readonly Rule[]): readonly Rule[] {
  const nonEmpty = [a, b, c].filter((l) => l.length > 0);
  if (nonEmpty.length <= 1) return nonEmpty[0] ?? EMPTY;
  const out: Rule[] = [];
  const idx = nonEmpty.map(() => 0);
  for (;;) {
    let best = -1;
    for (let k = 0; k < nonEmpty.length; k++) {
      const r = nonEmpty[k]![idx[k]!];
      if (r && (best < 0 || r.index < nonEmpty[best]![idx[best]!]!.index)) best = k;
    }
    if (best < 0) return out;
    out.push(nonEmpty[best]![idx[best]!++]!);
  }
}

/** Validates a request (the reference's Request); throws AccessDenied subclasses. */
export function checkRequest(req: PolicyRequest, view: SystemView, warnings: string[]): CheckedRequest {
  let argument = req.argument ?? '';
  if (argument === '') argument = '+';
  if (!argument.startsWith('+')) throw new RequestError("argument must be empty or start with '+'");
  const text = req.target === '' || req.target === undefined || req.target === null ? '@default' : req.target;
  let target: Operand = parseToken(text, 'intendedtarget', null, null);
  if (target.kind === 'name' && !view.has(target.text)) {
    warnings.push(`qrexec: target ${pyRepr(target.text)} does not exist, using @default instead`);
    target = { kind: 'default', text: '@default' };
  } else if (target.kind === 'dispvm-template') {
    const tpl = view.get(target.text.slice(8));
    if (!tpl || !tpl.info.template_for_dispvms) throw new AccessDenied(`not a template for dispvm: ${target.text.slice(8)}`);
  }
  let source = req.source;
  const requestedSource = req.requestedSource || null;
  if (requestedSource) {
    const info = view.get(requestedSource)?.info;
    if (!info) throw new RequestError(`unknown requested source qube '${requestedSource}'`);
    if (info.type !== 'RemoteVM') throw new RequestError(`${requestedSource}: requested source is only authorized for RemoteVM`);
    if ((info.relayvm ?? null) !== source) throw new RequestError(`${source} is not a relay for ${requestedSource}`);
    source = requestedSource;
  }
  return { service: req.service, argument, source, target, requestedSource, view };
}

function matchesButTarget(rule: Rule, req: CheckedRequest): boolean {
  return rule.sourceMatch({ kind: 'name', text: req.source }, null, req.view);
}

/** Source and target only: the index has already matched service and argument. */
function matchesCandidate(rule: Rule, req: CheckedRequest): boolean {
  return matchesButTarget(rule, req) && rule.targetMatch(req.target, req.source, req.view);
}

/** Whether a rule matches a request (service, argument, source and target). */
export function ruleMatches(rule: Rule, req: CheckedRequest): boolean {
  return (rule.service === null || rule.service === req.service) && (rule.argument === null || rule.argument === req.argument) && matchesCandidate(rule, req);
}

/** Whether a target may be used without starting it (autostart=no). */
function runsWithoutAutostart(target: string, view: SystemView): boolean {
  if (isDom0(target)) return true;
  if (target.startsWith('@dispvm')) return false;
  const e = view.get(target);
  if (!e) throw new EvaluationError(`autostart=no: target ${target} does not exist`, 'AssertionError: ');
  return e.info.power_state === 'Running';
}

function missing(key: string): EvaluationError {
  return new EvaluationError(`no such qube: ${key}`, `KeyError: ${pyRepr(key)}`);
}

/** A loaded policy, ready to evaluate requests. */
export class PolicyEvaluator {
  private readonly index: RuleIndex;

  constructor(
    readonly rules: readonly Rule[],
    readonly loadWarnings: readonly string[] = [],
  ) {
    this.index = new RuleIndex(rules);
  }

  /** The rules that can apply to a service+argument, in order. */
  candidates(service: string, argument: string): readonly Rule[] {
    return this.index.candidates(service, argument === '' ? '+' : argument);
  }

  evaluate(req: PolicyRequest, system: SystemInfo | SystemView): Resolution {
    const view = system instanceof SystemView ? system : systemView(system);
    const warnings: string[] = [];
    let checked: CheckedRequest;
    try {
      checked = checkRequest(req, view, warnings);
    } catch (err) {
      return failure('request', err, null, warnings);
    }
    let rule: Rule | null = null;
    try {
      for (const r of this.index.candidates(checked.service, checked.argument)) {
        if (matchesCandidate(r, checked)) {
          rule = r;
          break;
        }
      }
      if (rule === null) return { result: 'deny', rule: null, reason: 'no matching rule found', notify: true, warnings };
      if (rule.action === 'deny') {
        return { result: 'deny', rule, reason: `denied by policy ${ruleLocation(rule)}`, notify: rule.notify, warnings };
      }
      return rule.action === 'allow' ? this.allow(rule, checked, warnings) : this.ask(rule, checked, warnings);
    } catch (err) {
      if (err instanceof AccessDenied && !(err instanceof EvaluationError)) {
        return { result: 'deny', rule, reason: err.message, notify: err.notify, warnings };
      }
      return failure('evaluate', err, rule, warnings);
    }
  }

  private allow(rule: Rule, req: CheckedRequest, warnings: string[]): AllowResolution {
    const view = req.view;
    let target: string;
    if (rule.redirect) {
      target = rule.redirect.text;
      if (rule.redirect.kind === 'name' && !view.has(target)) {
        warnings.push(`qrexec: target ${pyRepr(target)} does not exist, using @default instead`);
        target = '@default';
      } else if (rule.redirect.kind === 'dispvm-template') {
        const tpl = view.get(rule.redirect.value);
        if (!tpl || !tpl.info.template_for_dispvms) throw new AccessDenied(`not a template for dispvm: ${rule.redirect.value}`);
      }
    } else target = req.target.text;
    const where = ruleLocation(rule);
    if (target === '@default') {
      throw new AccessDenied(`policy define 'allow' action at ${where} but no target is specified by caller or policy`);
    }
    if (target === '@dispvm') {
      const tpl = defaultDispvmTemplate(req.source, view);
      if (tpl === null) {
        throw new AccessDenied(`policy define 'allow' action to @dispvm at ${where} but no DispVM base is set for this VM`);
      }
      target = tpl;
    } else if (target === '@adminvm') target = 'dom0';
    if (!rule.autostart && !runsWithoutAutostart(target, view)) {
      throw new AccessDenied(`target ${target} is denied because it would require autostart`, rule.notify);
    }
    return { result: 'allow', rule, request: req, target, user: rule.user, autostart: rule.autostart, notify: rule.notify, warnings };
  }

  private ask(rule: Rule, req: CheckedRequest, warnings: string[]): AskResolution {
    const view = req.view;
    let targets: string[];
    if (rule.redirect) targets = [isDom0(rule.redirect.text) ? 'dom0' : rule.redirect.text];
    else targets = [...this.collectTargetsForAsk(req)];
    if (!rule.autostart) targets = targets.filter((t) => runsWithoutAutostart(t, view));
    const where = ruleLocation(rule);
    if (targets.length === 0) {
      throw new AccessDenied(`policy define 'ask' action at ${where} but no target is available to choose from`);
    }
    let def: string | null = null;
    if (rule.defaultTarget) {
      def = rule.defaultTarget.text;
      if (rule.defaultTarget.kind === 'dispvm') def = defaultDispvmTemplate(req.source, view);
      else if (isDom0(def)) def = 'dom0';
    }
    if (def && !targets.includes(def)) {
      warnings.push(`warning: policy define default_target=${def} at ${where} but it is not among allowed targets (${targets.join(', ')})`);
      def = null;
    }
    targets.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return {
      result: 'ask',
      rule,
      request: req,
      targetsForAsk: targets,
      defaultTarget: def,
      user: rule.user,
      autostart: rule.autostart,
      notify: rule.notify,
      warnings,
    };
  }

  /**
   * The targets `ask` offers: every rule for the service, argument and source
   * contributes its target (or `target=`), deny rules take theirs away, and an
   * earlier rule overrides a later one.
   */
  collectTargetsForAsk(req: CheckedRequest): Set<string> {
    const view = req.view;
    const src = view.get(req.source);
    if (!src) throw new EvaluationError(`unknown source qube ${req.source}: cannot list the targets to ask for`, `KeyError: ${pyRepr(req.source)}`);
    const sourceName = src.name;
    const sourceUuid = req.source.startsWith('uuid:') ? req.source : 'uuid:' + src.info.uuid;
    const targets = new Set<string>();
    const rules = this.index.candidates(req.service, req.argument);
    for (let i = rules.length - 1; i >= 0; i--) {
      const rule = rules[i]!;
      if (!matchesButTarget(rule, req)) continue;
      const token = (rule.action !== 'deny' ? rule.redirect : null) ?? rule.target;
      for (const raw of expandTarget(token, view)) {
        const name = uuidToName(raw, view);
        if (name === null) continue;
        if (rule.action === 'deny') targets.delete(name);
        else targets.add(name);
      }
    }
    if (targets.delete('@dispvm')) {
      const tpl = defaultDispvmTemplate(req.source, view);
      if (tpl !== null) targets.add(tpl);
    }
    if (targets.delete('@adminvm')) targets.add('dom0');
    targets.delete(sourceName);
    targets.delete(sourceUuid);
    for (const t of [...targets]) {
      const name = t.startsWith('@dispvm:') ? t.slice(8) : t;
      const e = view.get(name);
      if (!e) throw missing(name);
      if (e.info.internal) targets.delete(t);
    }
    return targets;
  }
}

function uuidToName(t: string, view: SystemView): string | null {
  if (t.startsWith('uuid:')) return view.get(t)?.name ?? null;
  if (t.startsWith('@dispvm:uuid:')) {
    const e = view.get(t.slice(8));
    return e ? '@dispvm:' + e.name : null;
  }
  return t;
}

function failure(stage: 'request' | 'evaluate', err: unknown, rule: Rule | null, warnings: string[]): ErrorResolution {
  const cause = err instanceof AccessDenied ? err : new EvaluationError(`internal error: ${(err as Error)?.message ?? String(err)}`);
  return { result: 'error', stage, errorType: cause.errorType, error: cause.message, rule, notify: cause.notify, cause, warnings };
}

/** The user (or an agent) approved an `ask` for `target`: the allow it becomes. */
export function approveAsk(res: AskResolution, target: string): AllowResolution {
  if (!res.targetsForAsk.includes(target)) throw new AccessDenied(`target ${target} is not a valid choice`);
  return {
    result: 'allow',
    rule: res.rule,
    request: res.request,
    target,
    user: res.user,
    autostart: res.autostart,
    notify: res.notify,
    warnings: res.warnings,
  };
}

/** The user said no to an `ask`. */
export function refuseAsk(res: AskResolution): AccessDenied {
  return new AccessDenied(`denied by the user ${ruleLocation(res.rule)}`, res.notify);
}

/**
 * What qrexec-policy-daemon answers for an allow: `user=`, `result=allow`,
 * `target=`, `target_uuid=`, `autostart=`, `requested_target=`, … lines.
 * Throws AccessDenied (loopback call, RemoteVM without relay) or
 * EvaluationError (the reference crashes).
 */
export function allowResponse(res: AllowResolution): string {
  const { request, target } = res;
  const view = request.view;
  const autostart = res.autostart ? 'True' : 'False';
  const user = `user=${res.user || 'DEFAULT'}`;
  if (request.source === target) throw new AccessDenied('loopback qrexec connection not supported');
  const policySource = request.requestedSource ? [`policy_source=${request.source}`] : [];
  if (isDom0(target)) {
    return [user, 'result=allow', 'target=dom0', `autostart=${autostart}`, `requested_target=${request.target.text}`].join('\n');
  }
  if (target.startsWith('@dispvm:')) {
    const e = view.get(target.slice(8));
    if (!e) throw missing(target.slice(8));
    if (typeof e.info.uuid !== 'string') throw missing('uuid');
    return [
      user,
      'result=allow',
      `target=${target}`,
      `target_uuid=@dispvm:uuid:${e.info.uuid}`,
      `autostart=${autostart}`,
      `requested_target=${request.target.text}`,
      ...policySource,
    ].join('\n');
  }
  const e = view.get(target);
  if (!e) throw missing(target);
  const info = e.info;
  if (info.type === 'RemoteVM') {
    if (!info.relayvm) throw new AccessDenied(`${target}: relayvm is not set`);
    if (!info.transport_rpc) throw new AccessDenied(`${target}: transport RPC is not set`);
    const relay = view.get(info.relayvm);
    if (!relay) throw missing(info.relayvm);
    return [
      'user=DEFAULT',
      'result=allow',
      `target=${info.relayvm}`,
      `target_uuid=uuid:${relay.info.uuid}`,
      `autostart=${autostart}`,
      `requested_target=${request.target.text}`,
      `service=${info.transport_rpc}+${request.target.text}+${request.service}${request.argument}`,
      ...policySource,
    ].join('\n');
  }
  return [
    user,
    'result=allow',
    `target=${target}`,
    `target_uuid=uuid:${info.uuid}`,
    `autostart=${autostart}`,
    `requested_target=${request.target.text}`,
    ...policySource,
  ].join('\n');
}
