// Reads a policy: the `*.policy` files of the policy directories in name
// order (a file of the runtime directory hides the one of the same name in
// the main directory), with `!include`, `!include-dir`, `!include-service`
// and `!compat-4.0` (the R4.0 per-service files of the legacy directory).
// Anything wrong stops the load with an error naming the file and line.

import { existsSync } from 'node:fs';
import { AccessDenied, PolicySyntaxError } from './errors.js';
import { isDir, isFile, joinPath, listDir, normPath, readBytes, resolvePath } from './fsutil.js';
import { splitFields, splitLines, strip } from './line-fields.js';
import { buildRule, invalidChars, validateServiceArgument, type Rule } from './rule.js';

export const DEFAULT_POLICY_DIR = '/etc/qubes/policy.d';
export const DEFAULT_RUNTIME_DIR = '/run/qubes/policy.d';
export const DEFAULT_LEGACY_DIR = '/etc/qubes-rpc/policy';
export const POLICY_SUFFIX = '.policy';

export interface LoadOptions {
  policyDir: string;
  /** its files take precedence over same-named files of policyDir */
  runtimeDir?: string | null;
  /** read by `!compat-4.0` (default /etc/qubes-rpc/policy) */
  legacyDir?: string | null;
  /**
   * Validation of a proposed change (admin API): resolved path → new content,
   * or null for a file about to be removed. Only policyDir is read then.
   */
  overrides?: ReadonlyMap<string, string | null>;
  /** read only these top-level files (by name); used to lint files one by one */
  onlyFiles?: ReadonlySet<string>;
}

export interface LoadedPolicy {
  rules: Rule[];
  /** every file and directory read, for change detection */
  sources: string[];
  /** what the reference logs as warnings while loading */
  warnings: string[];
}

const FILENAME_OK = /^[a-z0-9_.-]+$/;
const COMPAT_IGNORED_SUFFIXES = new Set(['.rpmsave', '.rpmnew', '.swp']);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Whether the loader reads a directory entry of this name. */
export function isPolicyFileName(name: string): boolean {
  return name.endsWith(POLICY_SUFFIX) && !name.startsWith('.');
}

/** pathlib's suffix: from the last dot, unless the name starts with it or ends with it. */
function suffixOf(name: string): string {
  const i = name.lastIndexOf('.');
  return i > 0 && i < name.length - 1 ? name.slice(i) : '';
}

/** The policy files of a directory, sorted; all or nothing when a name is invalid. */
function policyFilesOf(dir: string, entries: string[]): string[] {
  const paths = entries
    .filter((n) => isPolicyFileName(n))
    .map((n) => joinPath(dir, n))
    .filter(isFile);
  for (const p of paths) {
    const name = p.slice(p.lastIndexOf('/') + 1);
    if (!FILENAME_OK.test(name)) throw new AccessDenied(`invalid filename: ${p}`);
  }
  return paths.sort();
}

/** Text of a policy file; invalid UTF-8 is a clean error with the line of the first bad byte. */
export function decodePolicyText(bytes: Uint8Array, file: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalidUtf8(bytes, file);
  }
}

/** The error for bytes that are not UTF-8, naming the line of the first bad byte. */
function invalidUtf8(bytes: Uint8Array, file: string): PolicySyntaxError {
  let line = 1;
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      try {
        utf8.decode(bytes.subarray(start, i));
      } catch {
        return new PolicySyntaxError(file, line, 'file is not valid UTF-8');
      }
      line++;
      start = i + 1;
    }
  }
  return new PolicySyntaxError(file, null, 'file is not valid UTF-8');
}

/**
 * A policy file as the reference reads it: Python decodes a text file in
 * pieces of 8 KiB as lines are asked for, so the lines before the piece with
 * an invalid byte are parsed (and may fail first) before the decoding fails.
 * `text` holds those lines; `error`, if any, comes after them.
 */
export interface PolicyText {
  text: string;
  error?: PolicySyntaxError;
}

/** TextIOWrapper's chunk size */
const DECODE_CHUNK = 8192;

export function readPolicyText(bytes: Uint8Array, file: string): PolicyText {
  try {
    return { text: utf8.decode(bytes) };
  } catch {
    /* not UTF-8: the lines before the bad piece, then the error */
  }
  const stream = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let prefix = '';
  for (let at = 0; at < bytes.length; at += DECODE_CHUNK) {
    try {
      prefix += stream.decode(bytes.subarray(at, at + DECODE_CHUNK), { stream: true });
    } catch {
      break;
    }
  }
  // only whole lines were handed out; a trailing CR waits to see whether an LF follows
  let cut = prefix.lastIndexOf('\n');
  const cr = prefix.lastIndexOf('\r', prefix.length - 2);
  if (cr > cut) cut = cr;
  return { text: prefix.slice(0, cut + 1), error: invalidUtf8(bytes, file) };
}

class Loader {
  readonly rules: Rule[] = [];
  readonly warnings: string[] = [];
  readonly sources = new Set<string>();
  /** the directory of the top-level file being read: relative includes start there */
  private base = '.';
  /** real paths of the files being read, to refuse include cycles */
  private readonly open: string[] = [];
  private readonly legacyDir: string;

  constructor(private readonly opts: LoadOptions) {
    this.legacyDir = resolvePathAbs(opts.legacyDir ?? DEFAULT_LEGACY_DIR);
  }

  loadAll(): void {
    const overrides = this.opts.overrides;
    if (overrides) {
      const dir = normPath(this.opts.policyDir);
      this.base = dir;
      this.loadDir(dir);
      return;
    }
    const dirs = [this.opts.runtimeDir, this.opts.policyDir].filter((d): d is string => !!d).map(normPath);
    const seen = new Set<string>();
    const files: string[] = [];
    const runtime = this.opts.runtimeDir ? normPath(this.opts.runtimeDir) : null;
    for (const dir of dirs) {
      // A runtime directory that does not exist (yet) is an empty one: it
      // lives under /run, which a host without Qubes' tmpfiles entry starts
      // without. It stays a source, so that its creation is noticed.
      if (dir === runtime && !existsSync(dir)) {
        this.sources.add(dir);
        continue;
      }
      for (const p of policyFilesOf(dir, this.list(dir))) {
        const name = p.slice(p.lastIndexOf('/') + 1);
        if (seen.has(name) || (this.opts.onlyFiles && !this.opts.onlyFiles.has(name))) continue;
        seen.add(name);
        files.push(p);
      }
    }
    files.sort((a, b) => {
      const x = a.slice(a.lastIndexOf('/') + 1);
      const y = b.slice(b.lastIndexOf('/') + 1);
      return x < y ? -1 : x > y ? 1 : 0;
    });
    for (const p of files) {
      this.base = p.slice(0, p.lastIndexOf('/')) || '/';
      this.loadFile(p, this.readFile(p), true);
    }
  }

  /** `!include-dir`, and the policy directory itself when validating. */
  private loadDir(dir: string): void {
    const overrides = this.opts.overrides;
    const files = policyFilesOf(dir, this.list(dir));
    if (!overrides) {
      for (const p of files) this.loadFile(p, this.readFile(p), true);
      return;
    }
    const real = resolvePath(dir);
    for (const p of files) {
      if (!overrides.has(resolvePath(p))) this.loadFile(p, this.readFile(p), true);
    }
    for (const [p, content] of overrides) {
      if (content !== null && p.slice(0, p.lastIndexOf('/')) === real) this.loadFile(p, { text: content }, false);
    }
  }

  private list(dir: string): string[] {
    this.sources.add(dir);
    return listDir(dir);
  }

  private readFile(path: string): PolicyText {
    this.sources.add(path);
    return readPolicyText(readBytes(path), path);
  }

  /** An included file: its text, from the proposed change when validating one. */
  private includedText(target: string, file: string, line: number): PolicyText {
    const overrides = this.opts.overrides;
    if (overrides?.has(target)) {
      const content = overrides.get(target);
      if (content === null || content === undefined) {
        throw new PolicySyntaxError(file, line, `including a file that will be removed: ${target}`);
      }
      return { text: content };
    }
    if (!isFile(target)) throw new PolicySyntaxError(file, line, `not a file: ${target}`);
    return this.readFile(target);
  }

  private enter(path: string, file: string | null, line: number | null): string {
    const real = resolvePath(path);
    if (this.open.includes(real)) {
      throw new PolicySyntaxError(file, line, `include cycle: ${path} is already being read`);
    }
    this.open.push(real);
    return real;
  }

  private loadFile(path: string, { text, error }: PolicyText, fromDisk: boolean, from?: { file: string; line: number }): void {
    this.enter(path, from?.file ?? null, from?.line ?? null);
    const lines = splitLines(text, fromDisk);
    for (let i = 0; i < lines.length; i++) {
      const lineno = i + 1;
      const line = strip(lines[i]!);
      if (!line || line[0] === '#') continue;
      if (line[0] === '!') {
        const [directive, ...params] = splitFields(line);
        if (directive === '!include' || directive === '!include-dir') {
          if (params.length !== 1) throw new PolicySyntaxError(path, lineno, 'invalid number of params');
          const target = resolvePath(joinPath(this.base, params[0]!));
          if (directive === '!include') {
            this.loadFile(target, this.includedText(target, path, lineno), !this.opts.overrides?.has(target), { file: path, line: lineno });
          } else {
            if (!isDir(target)) throw new PolicySyntaxError(path, lineno, `not a directory: ${target}`);
            this.enter(target, path, lineno);
            this.loadDir(target);
            this.open.pop();
          }
          continue;
        }
        if (directive === '!include-service') {
          if (params.length !== 3) throw new PolicySyntaxError(path, lineno, 'invalid number of params');
          this.includeService(params[0]!, params[1]!, params[2]!, this.base, path, lineno);
          continue;
        }
        if (directive === '!compat-4.0') {
          if (params.length) throw new PolicySyntaxError(path, lineno, 'invalid number of params');
          this.warnings.push(`warning: !compat-4.0 directive in file ${path} line ${lineno} is transitional and will be deprecated`);
          this.compat40(path, lineno);
          continue;
        }
        throw new PolicySyntaxError(path, lineno, 'invalid directive');
      }
      const f = splitFields(line);
      if (f.length < 5) throw new PolicySyntaxError(path, lineno, 'wrong number of fields');
      this.rules.push(buildRule(f[0]!, f[1]!, f[2]!, f[3]!, f[4]!, f.slice(5), path, lineno, this.rules.length));
    }
    if (error) throw error;
    this.open.pop();
  }

  private includeService(service: string | null, argument: string | null, included: string, base: string, file: string, line: number): void {
    const [svc, arg] = validateServiceArgument(service, argument, file, line);
    const target = resolvePath(joinPath(base, included));
    const text = this.includedText(target, file, line);
    this.loadServiceFile(svc, arg, target, text, base, { file, line });
  }

  /** A file in the old per-service format: `source target action[,param=value…]`. */
  private loadServiceFile(
    service: string | null,
    argument: string | null,
    path: string,
    { text, error }: PolicyText,
    base: string,
    from: { file: string; line: number },
  ): void {
    this.enter(path, from.file, from.line);
    const lines = splitLines(text, !this.opts.overrides?.has(path));
    for (let i = 0; i < lines.length; i++) {
      const lineno = i + 1;
      let line = strip(lines[i]!);
      if (!line || line[0] === '#') continue;
      line = line.replaceAll('$include:', '!include ').replaceAll('$', '@').replaceAll(',', ' ');
      if (line[0] === '!') {
        const [directive, ...params] = splitFields(line);
        if (directive !== '!include') throw new PolicySyntaxError(path, lineno, 'invalid directive');
        if (params.length !== 1) throw new PolicySyntaxError(path, lineno, 'invalid number of params');
        this.includeService(service, argument, params[0]!, base, path, lineno);
        continue;
      }
      const f = splitFields(line);
      if (f.length < 3) throw new PolicySyntaxError(path, lineno, 'wrong number of fields');
      this.rules.push(buildRule(service, argument, f[0]!, f[1]!, f[2]!, f.slice(3), path, lineno, this.rules.length));
    }
    if (error) throw error;
    this.open.pop();
  }

  /** `!compat-4.0`: every legacy file, by service, the argument-less file of a service last. */
  private compat40(file: string, line: number): void {
    const legacy = this.legacyDir;
    const byService = new Map<string, Map<string, string>>();
    for (const name of this.list(legacy)) {
      const p = joinPath(legacy, name);
      if (!isFile(p) || COMPAT_IGNORED_SUFFIXES.has(suffixOf(name)) || name.startsWith('.')) continue;
      if (invalidChars(name, false).length) continue;
      const plus = name.indexOf('+');
      const service = plus < 0 ? name : name.slice(0, plus);
      const argument = plus < 0 ? '*' : name.slice(plus);
      let m = byService.get(service);
      if (!m) byService.set(service, (m = new Map()));
      m.set(argument, p);
    }
    const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    for (const service of [...byService.keys()].sort(cmp)) {
      const args = byService.get(service)!;
      const order = [...args.keys()].sort((a, b) => (a === '*' ? (b === '*' ? 0 : 1) : b === '*' ? -1 : cmp(a, b)));
      for (const argument of order) {
        const p = args.get(argument)!;
        this.includeService(service, argument, p, legacy, file, line);
        if (argument !== '*') {
          // what an R4.0 per-argument file implied: nothing else for this argument
          this.rules.push(buildRule(service, argument, '@anyvm', '@anyvm', 'deny', [], p, null, this.rules.length));
          this.rules.push(buildRule(service, argument, '@anyvm', '@adminvm', 'deny', [], p, null, this.rules.length));
        }
      }
    }
  }
}

function resolvePathAbs(p: string): string {
  return normPath(p.startsWith('/') ? p : resolvePath(p));
}

/**
 * Loads the whole policy. Throws AccessDenied (bad file name, unreadable
 * file) or PolicySyntaxError (file:line: what is wrong).
 */
export function loadPolicy(opts: LoadOptions): LoadedPolicy {
  const loader = new Loader(opts);
  loader.loadAll();
  return { rules: loader.rules, warnings: loader.warnings, sources: [...loader.sources] };
}

/** The names of the top-level policy files, as the loader would read them. */
export function topLevelFiles(opts: LoadOptions): string[] {
  const names = new Set<string>();
  for (const dir of [opts.runtimeDir, opts.policyDir]) {
    if (!dir || (dir === opts.runtimeDir && !existsSync(dir))) continue;
    for (const p of policyFilesOf(normPath(dir), listDir(normPath(dir)))) names.add(p.slice(p.lastIndexOf('/') + 1));
  }
  return [...names].sort();
}

export interface LintReport {
  rules: number;
  /** load errors, the first of each file (the whole policy stops at the first) */
  errors: AccessDenied[];
}

/** Checks every top-level file on its own, so that all broken files are reported at once. */
export function lintPolicy(opts: LoadOptions): LintReport {
  try {
    return { rules: loadPolicy(opts).rules.length, errors: [] };
  } catch (err) {
    if (!(err instanceof AccessDenied)) throw err;
    const errors: AccessDenied[] = [err];
    let names: string[];
    try {
      names = topLevelFiles(opts);
    } catch {
      return { rules: 0, errors };
    }
    for (const name of names) {
      try {
        loadPolicy({ ...opts, onlyFiles: new Set([name]) });
      } catch (e) {
        if (e instanceof AccessDenied && !errors.some((x) => x.message === e.message)) errors.push(e);
      }
    }
    return { rules: 0, errors };
  }
}
