// One policy rule: `service argument source target action [param=value …]`,
// checked field by field in the order the reference checks them, so that a
// line with several mistakes is reported with the same first mistake.

import { PolicySyntaxError } from './errors.js';
import { pyListRepr, pyRepr, pyTupleRepr } from '../lib/py-repr.js';
import { compileMatcher, parseToken, type Matcher, type Token } from './tokens.js';

export type ActionName = 'allow' | 'deny' | 'ask';

export interface Rule {
  /** position in the whole policy (0-based), the tie-breaker of the index */
  index: number;
  /** null for `*` */
  service: string | null;
  /** with its leading '+'; null for `*` */
  argument: string | null;
  source: Token;
  target: Token;
  sourceMatch: Matcher;
  targetMatch: Matcher;
  action: ActionName;
  /** `target=` of allow/ask */
  redirect: Token | null;
  /** `default_target=` of ask */
  defaultTarget: Token | null;
  user: string | null;
  notify: boolean;
  autostart: boolean;
  file: string;
  /** null for the implicit deny rules that `!compat-4.0` adds */
  line: number | null;
  /** the rule in the policy.d syntax (fields separated by one space) */
  text: string;
}

/** "file:line" as the reference prints a rule's place. */
export function ruleLocation(rule: Rule): string {
  return `${rule.file}:${rule.line === null ? 'None' : rule.line}`;
}

const RPCNAME_CHARS = /^[A-Za-z0-9+\-._]*$/;

/** Characters of `s` that are not allowed in a service name/argument, sorted, once each. */
export function invalidChars(s: string, disallowPlus: boolean): string[] {
  if (RPCNAME_CHARS.test(s) && !(disallowPlus && s.includes('+'))) return [];
  const bad = new Set<string>();
  for (const ch of s) {
    if (!/^[A-Za-z0-9+\-._]$/.test(ch) || (disallowPlus && ch === '+')) bad.add(ch);
  }
  return [...bad].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
}

/** Checks the service and argument columns; `*` becomes null. */
export function validateServiceArgument(
  service: string | null,
  argument: string | null,
  file: string | null,
  line: number | null,
): [string | null, string | null] {
  const svc = service === '*' ? null : service;
  if (svc !== null) {
    const bad = invalidChars(svc, true);
    if (bad.length) throw new PolicySyntaxError(file, line, `service ${pyRepr(svc)} contains invalid characters: ${pyTupleRepr(bad)}`);
  }
  const arg = argument === '*' ? null : argument;
  if (arg !== null) {
    const bad = invalidChars(arg, false);
    if (bad.length) throw new PolicySyntaxError(file, line, `argument ${pyRepr(arg)} contains invalid characters: ${pyTupleRepr(bad)}`);
    if (!arg.startsWith('+')) throw new PolicySyntaxError(file, line, `argument ${pyRepr(arg)} does not start with +`);
    if (svc === null) throw new PolicySyntaxError(file, line, 'only * argument allowed for * service');
  }
  return [svc, arg];
}

const PARAMS: Record<ActionName, ReadonlySet<string>> = {
  allow: new Set(['target', 'user', 'notify', 'autostart']),
  deny: new Set(['notify']),
  ask: new Set(['target', 'default_target', 'user', 'notify', 'autostart']),
};
const ACTION_CLASS: Record<ActionName, string> = { allow: 'Allow', deny: 'Deny', ask: 'Ask' };

export function buildRule(
  service: string | null,
  argument: string | null,
  source: string,
  target: string,
  action: string,
  params: string[],
  file: string,
  line: number | null,
  index: number,
): Rule {
  const [svc, arg] = validateServiceArgument(service, argument, file, line);
  const src = parseToken(source, 'source', file, line);
  const dst = parseToken(target, 'target', file, line);
  if (action !== 'allow' && action !== 'deny' && action !== 'ask') {
    throw new PolicySyntaxError(file, line, `invalid action: ${action}`);
  }
  const kv = new Map<string, string>();
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq < 0) throw new PolicySyntaxError(file, line, `invalid action parameter syntax: ${pyRepr(p)}`);
    const key = p.slice(0, eq);
    if (kv.has(key)) throw new PolicySyntaxError(file, line, `parameter given twice: ${pyRepr(key)}`);
    kv.set(key, p.slice(eq + 1));
  }
  const flags: Record<string, boolean | undefined> = {};
  for (const key of ['notify', 'autostart']) {
    const v = kv.get(key);
    if (v === undefined) continue;
    if (v !== 'yes' && v !== 'no') {
      throw new PolicySyntaxError(file, line, `${pyRepr(key)} is ${pyRepr(v)}, but can be only 'yes' or 'no'`);
    }
    flags[key] = v === 'yes';
  }
  for (const key of kv.keys()) {
    if (!PARAMS[action].has(key)) {
      throw new PolicySyntaxError(file, line, `invalid parameters for action ${ACTION_CLASS[action]}: ${pyListRepr(params)}`);
    }
  }
  const redirectText = kv.get('target');
  const redirect = redirectText === undefined ? null : parseToken(redirectText, 'redirect', file, line);
  const defaultText = kv.get('default_target');
  const defaultTarget = defaultText === undefined ? null : parseToken(defaultText, 'redirect', file, line);
  if (dst.kind === 'default' && action === 'allow' && redirect === null) {
    throw new PolicySyntaxError(file, line, 'allow action for @default rule must specify target= option');
  }
  return {
    index,
    service: svc,
    argument: arg,
    source: src,
    target: dst,
    sourceMatch: compileMatcher(src),
    targetMatch: compileMatcher(dst),
    action,
    redirect,
    defaultTarget,
    user: kv.get('user') ?? null,
    notify: flags['notify'] ?? action === 'deny',
    autostart: flags['autostart'] ?? true,
    file,
    line,
    text: [service ?? '*', argument ?? '*', source, target, action, ...params].join(' '),
  };
}
