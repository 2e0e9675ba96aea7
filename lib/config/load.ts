// Reading a daemon's configuration: built-in defaults, then the main file
// <daemon>.conf, then the drop-ins <daemon>.conf.d/*.conf in name order (the
// last one wins), then command-line flags. Files hold `key = value` lines,
// `#` comments and blank lines. Every value is converted by the key's type
// and checked by ajv against the key's declaration; any mistake stops the
// start as `file:line: key: problem`, an unknown key is a warning naming
// its file and line.
import { readFileSync, readdirSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import AjvModule, { type ValidateFunction } from 'ajv';
import { formatValue, jsonSchemaOf, type ConfigValue, type ConfigValues, type DaemonSchema, type KeySpec } from './schema.js';

/** Where a value came from: 'default', 'FILE:LINE' or 'command line'. */
export type Source = string;

export class ConfigError extends Error {}

export interface LoadedConfig {
  schema: DaemonSchema;
  values: ConfigValues;
  sources: Record<string, Source>;
  /** unknown keys: `file:line: unknown key "x" (ignored)` */
  warnings: string[];
  /** the files read, in the order they were applied */
  files: string[];
}

export interface LoadOptions {
  /** the main file; its drop-in directory is `<file>.d`. Absent: defaults and flags only. */
  file?: string | null;
  /** values from the command line, as text (a list key: every occurrence) */
  flags?: Record<string, string | string[]>;
}

const Ajv = AjvModule as unknown as typeof AjvModule.default;
const ajv = new Ajv({ allErrors: true, strict: true });
const validators = new WeakMap<KeySpec, ValidateFunction>();

function validatorOf(spec: KeySpec): ValidateFunction {
  let v = validators.get(spec);
  if (!v) {
    v = ajv.compile(jsonSchemaOf(spec));
    validators.set(spec, v);
  }
  return v;
}

const TRUE = new Set(['true', 'yes', 'on', '1']);
const FALSE = new Set(['false', 'no', 'off', '0']);

/** Text to a typed value, or the problem with it. */
export function convert(spec: KeySpec, text: string | string[], base: string | null): { value: ConfigValue } | { problem: string } {
  const one = Array.isArray(text) ? text[text.length - 1]! : text;
  let value: ConfigValue;
  switch (spec.type) {
    case 'integer':
      if (!/^[+-]?\d+$/.test(one)) return { problem: `expected an integer, got ${JSON.stringify(one)}` };
      value = Number(one);
      break;
    case 'size': {
      const m = /^(\d+)([KMG]?)$/i.exec(one);
      if (!m) return { problem: `expected a byte count (with K, M or G), got ${JSON.stringify(one)}` };
      value = Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
      if (!Number.isSafeInteger(value)) return { problem: `too large: ${JSON.stringify(one)}` };
      break;
    }
    case 'number':
      if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(one)) return { problem: `expected a number, got ${JSON.stringify(one)}` };
      value = Number(one);
      break;
    case 'boolean':
      if (TRUE.has(one.toLowerCase())) value = true;
      else if (FALSE.has(one.toLowerCase())) value = false;
      else return { problem: `expected true or false, got ${JSON.stringify(one)}` };
      break;
    case 'list': {
      const words = (Array.isArray(text) ? text : text.split(/\s+/)).filter((w) => w !== '');
      if (spec.paths) {
        const rel = base === null ? words.find((w) => !isAbsolute(w)) : undefined;
        if (rel !== undefined) return { problem: `expected absolute paths, got ${JSON.stringify(rel)}` };
        value = base === null ? words : words.map((w) => resolve(base, w));
      } else value = words;
      break;
    }
    case 'path':
      if (one === '') {
        value = '';
        break;
      }
      if (base === null && !isAbsolute(one)) return { problem: `expected an absolute path, got ${JSON.stringify(one)}` };
      value = base === null ? one : resolve(base, one);
      break;
    default:
      value = one;
  }
  const validate = validatorOf(spec);
  if (!validate(value)) {
    const e = validate.errors![0]!;
    const detail =
      e.keyword === 'enum'
        ? `must be one of ${(e.params as { allowedValues: string[] }).allowedValues.map((a) => a || '(empty)').join(', ')}`
        : (e.message ?? 'invalid');
    return { problem: `${detail}, got ${JSON.stringify(formatValue(value))}` };
  }
  return { value };
}

/** The files that make up a configuration: the main file, then its drop-ins by name. */
export function configFiles(file: string): string[] {
  const dir = `${file}.d`;
  let dropIns: string[] = [];
  try {
    dropIns = readdirSync(dir)
      .filter((n) => n.endsWith('.conf') && !n.startsWith('.'))
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(`${dir}: cannot read: ${describe(e)}`);
  }
  return [file, ...dropIns.map((n) => `${dir}/${n}`)];
}

function describe(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return (e as Error).message;
}

export interface Line {
  key: string;
  value: string;
  file: string;
  line: number;
}

/** Split one file into its `key = value` lines; a malformed line is a ConfigError. */
export function parseConfigText(text: string, file: string): Line[] {
  const out: Line[] = [];
  text.split('\n').forEach((raw, i) => {
    const lineNo = i + 1;
    // a comment is a line starting with #, or " #..." after a value (so that
    // --print-config's output can be pasted back as it is)
    const line = raw
      .replace(/\r$/, '')
      .replace(/(^|\s)#.*$/, '')
      .trim();
    if (line === '') return;
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim();
    if (eq < 0) throw new ConfigError(`${file}:${lineNo}: ${key}: expected "key = value"`);
    if (!/^[a-z][a-z0-9_]*$/.test(key)) throw new ConfigError(`${file}:${lineNo}: ${key || '(empty)'}: not a key name (lower case letters, digits and _)`);
    out.push({ key, value: line.slice(eq + 1).trim(), file, line: lineNo });
  });
  return out;
}

/** Defaults < main file < drop-ins (in name order) < command line. */
export function loadConfig(schema: DaemonSchema, o: LoadOptions = {}): LoadedConfig {
  const values: ConfigValues = {};
  const sources: Record<string, Source> = {};
  const warnings: string[] = [];
  for (const [k, spec] of Object.entries(schema.keys)) {
    values[k] = spec.default;
    sources[k] = 'default';
  }
  const files = o.file ? configFiles(resolve(o.file)) : [];
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      throw new ConfigError(`${f}: cannot read: ${describe(e)}`);
    }
    for (const l of parseConfigText(text, f)) {
      const spec = schema.keys[l.key];
      if (!spec) {
        warnings.push(`${f}:${l.line}: unknown key "${l.key}" (ignored)`);
        continue;
      }
      const r = convert(spec, l.value, null);
      if ('problem' in r) throw new ConfigError(`${f}:${l.line}: ${l.key}: ${r.problem}`);
      values[l.key] = r.value;
      sources[l.key] = `${f}:${l.line}`;
    }
  }
  for (const [k, text] of Object.entries(o.flags ?? {})) {
    const spec = schema.keys[k];
    if (!spec) throw new ConfigError(`command line: --${k}: unknown option`);
    // flags are relative to the working directory, as they always were
    const r = convert(spec, text, process.cwd());
    if ('problem' in r) throw new ConfigError(`command line: ${k}: ${r.problem}`);
    values[k] = r.value;
    sources[k] = 'command line';
  }
  for (const [k, spec] of Object.entries(schema.keys)) {
    if (sources[k] === 'default' && spec.derive) values[k] = spec.derive(values);
  }
  return { schema, values, sources, warnings, files };
}

/** `key = value  # source`, one line per key, in declaration order. */
export function printConfig(c: LoadedConfig): string {
  return (
    Object.keys(c.schema.keys)
      .map((k) => {
        const v = formatValue(c.values[k]!);
        return `${k} =${v === '' ? '' : ' ' + v}  # ${c.sources[k]}`;
      })
      .join('\n') + '\n'
  );
}

/** What changed between two loads, split by whether SIGHUP can apply it. */
export function diffConfig(before: LoadedConfig, after: LoadedConfig): { apply: string[]; restart: string[] } {
  const apply: string[] = [],
    restart: string[] = [];
  for (const [k, spec] of Object.entries(after.schema.keys)) {
    if (formatValue(before.values[k]!) === formatValue(after.values[k]!)) continue;
    (spec.reload ? apply : restart).push(k);
  }
  return { apply, restart };
}
