// The command line every daemon shares: one flag per declared key (the key's
// name with dashes: `request_timeout` is `--request-timeout`), plus
// `--config FILE` (its drop-ins in FILE.d/), `--print-config` and `--help`.
// Built on node:util parseArgs, so unknown or malformed flags are refused the
// same way in every daemon.
import { parseArgs } from 'node:util';
import { ConfigError, diffConfig, loadConfig, printConfig, type LoadedConfig } from './load.js';
import { flagName, formatValue, type DaemonSchema } from './schema.js';

export interface CommandLine {
  /** --config FILE, resolved; null: defaults and flags only */
  file: string | null;
  flags: Record<string, string | string[]>;
  printConfig: boolean;
  help: boolean;
  positionals: string[];
}

type FlagOption = { type: 'string' | 'boolean'; multiple?: boolean };

export function parseCommandLine(schema: DaemonSchema, argv: string[], o: { positionals?: boolean } = {}): CommandLine {
  const options: Record<string, FlagOption> = {
    config: { type: 'string' },
    'print-config': { type: 'boolean' },
    help: { type: 'boolean' },
  };
  const byFlag = new Map<string, string>();
  for (const [k, spec] of Object.entries(schema.keys)) {
    if (spec.flag === false) continue;
    const f = flagName(k);
    byFlag.set(f, k);
    options[f] = spec.type === 'list' ? { type: 'string', multiple: true } : { type: 'string' };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: o.positionals ?? false });
  } catch (e) {
    throw new ConfigError(`command line: ${(e as Error).message.replace(/\. To specify a positional argument.*$/s, '')}`);
  }
  const flags: Record<string, string | string[]> = {};
  for (const [f, v] of Object.entries(parsed.values)) {
    const k = byFlag.get(f);
    if (k && v !== undefined) flags[k] = v as string | string[];
  }
  return {
    file: (parsed.values.config as string | undefined) ?? null,
    flags,
    printConfig: parsed.values['print-config'] === true,
    help: parsed.values.help === true,
    positionals: parsed.positionals,
  };
}

/** One line per key for --help: `--request-timeout N  how long ... (default 30)`. */
export function flagsHelp(schema: DaemonSchema): string {
  const rows = Object.entries(schema.keys)
    .filter(([, s]) => s.flag !== false)
    .map(([k, s]) => {
      const d = s.defaultDoc ?? formatValue(s.default);
      return `  --${flagName(k)} ${s.enum ? s.enum.join('|') : s.type === 'list' ? 'VALUE (repeatable)' : s.type.toUpperCase()}\n      ${s.help}${d === '' ? '' : ` (default: ${d})`}`;
    });
  return [
    '  --config FILE   read FILE, then FILE.d/*.conf in name order; flags override both',
    "  --print-config  print every key's effective value and its source, then exit",
    ...rows,
  ].join('\n');
}

export interface DaemonConfig {
  cmd: CommandLine;
  current: LoadedConfig;
  /** re-read the files (the command line still wins); throws ConfigError on a bad file */
  reread(): { next: LoadedConfig; apply: string[]; restart: string[] };
}

/**
 * What every daemon's main() does first: parse the command line, load the
 * files, print warnings, and handle --help and --print-config (both exit).
 * A usage or configuration error exits 2 with `<program>: file:line: key: problem`.
 */
export function startConfig(program: string, schema: DaemonSchema, argv: string[], usage: string, o: { positionals?: boolean } = {}): DaemonConfig {
  let cmd: CommandLine;
  let current: LoadedConfig;
  try {
    cmd = parseCommandLine(schema, argv, o);
    if (cmd.help) {
      process.stdout.write(`${usage}\n${flagsHelp(schema)}\n`);
      process.exit(0);
    }
    current = loadConfig(schema, { file: cmd.file, flags: cmd.flags });
  } catch (e) {
    process.stderr.write(`${program}: ${(e as Error).message}\n`);
    if (!(e instanceof ConfigError)) process.stderr.write(`${usage}\n`);
    process.exit(2);
  }
  for (const w of current.warnings) process.stderr.write(`${program}: warning: ${w}\n`);
  if (cmd.printConfig) {
    process.stdout.write(printConfig(current));
    process.exit(0);
  }
  const self: DaemonConfig = {
    cmd,
    current,
    reread() {
      const next = loadConfig(schema, { file: cmd.file, flags: cmd.flags });
      const d = diffConfig(self.current, next);
      return { next, ...d };
    },
  };
  return self;
}

/**
 * SIGHUP: re-read the configuration, hand the keys that may change at run
 * time to `apply`, and log what was applied and what waits for a restart.
 * A configuration that no longer loads is logged and the running one kept.
 */
export function reloadOnSighup(
  program: string,
  cfg: DaemonConfig,
  apply: (next: LoadedConfig, keys: string[]) => void,
  log: (line: string) => void,
): () => void {
  const onHup = () => {
    let r: ReturnType<DaemonConfig['reread']>;
    try {
      r = cfg.reread();
    } catch (e) {
      log(`${program}: reload failed, keeping the running configuration: ${(e as Error).message}`);
      return;
    }
    for (const w of r.next.warnings) log(`${program}: warning: ${w}`);
    try {
      if (r.apply.length) apply(r.next, r.apply);
    } catch (e) {
      log(`${program}: reload failed, keeping the running configuration: ${(e as Error).message}`);
      return;
    }
    // keys that need a restart keep their running value until then
    const kept = { ...r.next.values },
      keptSources = { ...r.next.sources };
    for (const k of r.restart) {
      kept[k] = cfg.current.values[k]!;
      keptSources[k] = cfg.current.sources[k]!;
    }
    cfg.current = { ...r.next, values: kept, sources: keptSources };
    const show = (k: string) => `${k}=${formatValue(r.next.values[k]!)}`;
    log(
      `${program}: reloaded configuration; applied: ${r.apply.map(show).join(', ') || 'nothing changed'}` +
        (r.restart.length ? `; needs a restart: ${r.restart.map(show).join(', ')}` : ''),
    );
  };
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}
