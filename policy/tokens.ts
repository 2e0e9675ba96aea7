// Qube designations of the policy language: plain names, `uuid:` forms and
// the @keywords, where each may appear, how a rule's token matches the
// request's source or target, and what a target token expands to when the
// list of choices for `ask` is built.

import { EvaluationError, PolicySyntaxError } from './errors.js';
import { pyRepr } from '../lib/py-repr.js';
import type { SystemView } from './system-info.js';

export type TokenKind = 'name' | 'wildcard' | 'adminvm' | 'anyvm' | 'default' | 'dispvm' | 'dispvm-template' | 'dispvm-tag' | 'tag' | 'type';

/** Where a token stands: rule source, rule target, `target=`/`default_target=`, request target. */
export type TokenContext = 'source' | 'target' | 'redirect' | 'intendedtarget';

export interface Token {
  readonly kind: TokenKind;
  /** the token as written */
  readonly text: string;
  /** the part after the prefix (`@tag:x` → `x`), the name for plain names */
  readonly value: string;
}

const ALLOWED: Record<TokenContext, ReadonlySet<TokenKind>> = {
  source: new Set<TokenKind>(['wildcard', 'adminvm', 'anyvm', 'type', 'tag', 'dispvm-template', 'dispvm-tag']),
  target: new Set<TokenKind>(['wildcard', 'adminvm', 'anyvm', 'default', 'type', 'tag', 'dispvm', 'dispvm-template', 'dispvm-tag']),
  redirect: new Set<TokenKind>(['adminvm', 'dispvm', 'dispvm-template']),
  intendedtarget: new Set<TokenKind>(['adminvm', 'default', 'dispvm', 'dispvm-template']),
};

const EXACT: ReadonlyArray<readonly [string, TokenKind]> = [
  ['*', 'wildcard'],
  ['@adminvm', 'adminvm'],
  ['@anyvm', 'anyvm'],
  ['@default', 'default'],
  ['@dispvm', 'dispvm'],
];
// In this order: `@dispvm:@tag:x` is tried as `@dispvm:` first and skipped
// because its value starts with '@'.
const PREFIX: ReadonlyArray<readonly [string, TokenKind]> = [
  ['@type:', 'type'],
  ['@tag:', 'tag'],
  ['@dispvm:', 'dispvm-template'],
  ['@dispvm:@tag:', 'dispvm-tag'],
];

export const DOM0_UUID = 'uuid:00000000-0000-0000-0000-000000000000';

export function isDom0(text: string | null): boolean {
  return text === '@adminvm' || text === 'dom0' || text === DOM0_UUID;
}

/**
 * Parses one token for a context. Errors carry the file and line given
 * (`<unknown>:0` for a request, like the reference).
 */
export function parseToken(text: string, context: TokenContext, file: string | null, line: number | null): Token {
  const where = line ?? 0;
  if (text.length === 0) throw new PolicySyntaxError(file, where, `invalid empty ${context} token`);
  if (!(text.startsWith('@') || text === '*')) return { kind: 'name', text, value: text };
  const allowed = ALLOWED[context];
  for (const [exact, kind] of EXACT) {
    if (allowed.has(kind) && text === exact) return { kind, text, value: text };
  }
  for (const [prefix, kind] of PREFIX) {
    if (!allowed.has(kind) || !text.startsWith(prefix)) continue;
    const value = text.slice(prefix.length);
    if (!value) throw new PolicySyntaxError(file, where, `invalid empty ${prefix} token: ${pyRepr(text)}`);
    if (value.startsWith('@')) continue;
    return { kind, text, value };
  }
  throw new PolicySyntaxError(file, where, `invalid ${context} token: ${pyRepr(text)}`);
}

/** The request side of a match: the source (always kind 'name') or the verified intended target. */
export interface Operand {
  readonly kind: TokenKind;
  readonly text: string;
}

export type Matcher = (other: Operand, source: string | null, view: SystemView) => boolean;

/** Equality of two designations where either may be a `uuid:` form. */
function sameQube(view: SystemView, a: string, b: string): boolean {
  if (a.startsWith('uuid:')) {
    if (b.startsWith('uuid:')) return a === b;
    const e = view.get(b);
    return e !== undefined && e.info.uuid === a.slice(5);
  }
  if (b.startsWith('uuid:')) {
    const e = view.get(a);
    return e !== undefined && e.info.uuid === b.slice(5);
  }
  return a === b;
}

/** `@dispvm:<source's default_dispvm>`, or null when the source has none. */
export function defaultDispvmTemplate(source: string, view: SystemView): string | null {
  const e = view.get(source);
  if (!e) return null;
  const tpl = e.info.default_dispvm;
  return tpl === null || tpl === undefined ? null : '@dispvm:' + tpl;
}

/** A precompiled test of a rule's source or target token. */
export function compileMatcher(token: Token): Matcher {
  const self = token.text;
  switch (token.kind) {
    case 'wildcard':
      return () => true;
    case 'adminvm':
      return (o) => isDom0(o.text);
    case 'anyvm':
      return (o) => !isDom0(o.text);
    case 'type': {
      const v = token.value;
      return (o, _s, view) => view.get(o.text)?.info.type === v;
    }
    case 'tag': {
      const v = token.value;
      return (o, _s, view) => {
        const tags = view.get(o.text)?.info.tags;
        return tags !== undefined && tags.includes(v);
      };
    }
    case 'dispvm':
      return (o) => o.text === '@dispvm';
    case 'dispvm-template':
      return (o, source, view) => {
        if (o.kind === 'dispvm' && source !== null) {
          const tpl = defaultDispvmTemplate(source, view);
          if (tpl === null) {
            // the reference crashes here; the request is refused instead
            throw new EvaluationError(`cannot compare ${self} with @dispvm: ${source} has no default disposable template`);
          }
          return sameQube(view, self, tpl);
        }
        if (o.kind !== 'dispvm-template') return false;
        return sameQube(view, token.value, o.text.slice(8));
      };
    case 'dispvm-tag': {
      const v = token.value;
      return (o, source, view) => {
        let tpl: string | null = o.kind === 'dispvm-template' ? o.text : null;
        if (o.kind === 'dispvm' && source !== null) tpl = defaultDispvmTemplate(source, view);
        if (tpl === null) return false;
        const e = view.get(tpl.slice(8));
        if (!e) throw new EvaluationError(`disposable template ${tpl.slice(8)} does not exist`);
        return Boolean(e.info.template_for_dispvms) && e.info.tags.includes(v);
      };
    }
    case 'default':
    case 'name':
      if (isDom0(self)) return (o) => isDom0(o.text);
      if (self.startsWith('uuid:')) return (o, _s, view) => sameQube(view, self, o.text);
      return (o, _s, view) => (o.text.startsWith('uuid:') ? sameQube(view, self, o.text) : o.text === self);
  }
}

/**
 * What a target token stands for when the choices of `ask` are collected:
 * qube names, `@dispvm:<template>`, `@dispvm`, `@adminvm` (raw, before uuid
 * forms are turned into names).
 */
export function expandTarget(token: Token, view: SystemView): string[] {
  const out: string[] = [];
  switch (token.kind) {
    case 'wildcard':
    case 'anyvm':
      for (const name of view.names) {
        const info = view.get(name)!.info;
        if (token.kind === 'wildcard' || !isDom0(name)) out.push(name);
        if (info.template_for_dispvms) out.push('@dispvm:' + name);
      }
      out.push('@dispvm');
      return out;
    case 'default':
      return out;
    case 'type':
    case 'tag':
      for (const name of view.names) {
        const info = view.get(name)!.info;
        if (token.kind === 'type' ? info.type === token.value : info.tags.includes(token.value)) out.push(name);
      }
      return out;
    case 'adminvm':
    case 'dispvm':
      return [token.text];
    case 'dispvm-template': {
      const e = view.get(token.value);
      if (!e) throw new EvaluationError(`${token.text} names no existing qube`);
      if (e.info.template_for_dispvms) out.push(token.text);
      return out;
    }
    case 'dispvm-tag':
      for (const name of view.names) {
        const info = view.get(name)!.info;
        if (info.tags.includes(token.value) && info.template_for_dispvms) out.push('@dispvm:' + name);
      }
      return out;
    case 'name':
      return view.has(token.text) ? [token.text] : out;
  }
}
