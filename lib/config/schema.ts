// How a daemon declares its configuration keys: once, with type, default,
// range or allowed values and help. The same declaration drives the file
// parser, the command-line flags, the ajv validation, --print-config and the
// generated docs/CONFIGURATION.md, so none of them can drift from the others.

export type ConfigValue = string | number | boolean | string[];
export type ConfigValues = Record<string, ConfigValue>;

export interface KeySpec {
  /**
   * string: any text; path: an absolute path ('' where allowed means none);
   * integer / number: decimal; boolean: true|false|yes|no|on|off|1|0;
   * list: whitespace-separated words (a repeated flag on the command line);
   * size: a byte count, with an optional K, M or G suffix (powers of 1024).
   */
  type: 'string' | 'path' | 'integer' | 'size' | 'number' | 'boolean' | 'list';
  default: ConfigValue;
  help: string;
  minimum?: number;
  maximum?: number;
  enum?: readonly string[];
  /** list: its words are paths (absolute in files, relative to the working directory as flags) */
  paths?: boolean;
  /** a regular expression a string value must match (JSON-schema `pattern`) */
  pattern?: string;
  /** for docs: what the number counts (seconds, bytes, ...) */
  unit?: string;
  /** true: SIGHUP applies a new value at run time; otherwise it needs a restart */
  reload?: boolean;
  /** the effective default when it follows from other keys (e.g. a file under base_dir) */
  derive?: (v: ConfigValues) => ConfigValue;
  /** how docs and packaged files show a derived default, e.g. "BASE_DIR/qubes.xml" */
  defaultDoc?: string;
  /** false: the key has no command-line flag */
  flag?: boolean;
}

export interface DaemonSchema {
  /** the name of its files: <daemon>.conf and <daemon>.conf.d/ */
  daemon: string;
  /** one sentence for the docs */
  summary: string;
  keys: Record<string, KeySpec>;
}

/** `--max-connections` for `max_connections`. */
export function flagName(key: string): string {
  return key.replace(/_/g, '-');
}

/** The JSON schema ajv checks one key's converted value against. */
export function jsonSchemaOf(spec: KeySpec): Record<string, unknown> {
  const s: Record<string, unknown> = {};
  switch (spec.type) {
    case 'integer':
    case 'size':
      s.type = 'integer';
      break;
    case 'number':
      s.type = 'number';
      break;
    case 'boolean':
      s.type = 'boolean';
      break;
    case 'list':
      s.type = 'array';
      s.items = { type: 'string', minLength: 1 };
      break;
    default:
      s.type = 'string';
  }
  if (spec.minimum !== undefined) s.minimum = spec.minimum;
  if (spec.maximum !== undefined) s.maximum = spec.maximum;
  if (spec.enum) s.enum = [...spec.enum];
  if (spec.pattern) s.pattern = spec.pattern;
  return s;
}

/** The whole daemon as one JSON schema object (what the key declarations amount to). */
export function jsonSchemaOfDaemon(schema: DaemonSchema): Record<string, unknown> {
  return {
    type: 'object',
    additionalProperties: false,
    properties: Object.fromEntries(Object.entries(schema.keys).map(([k, spec]) => [k, jsonSchemaOf(spec)])),
  };
}

/** A value as it is written in a file and printed by --print-config. */
export function formatValue(v: ConfigValue): string {
  if (Array.isArray(v)) return v.join(' ');
  return String(v);
}
