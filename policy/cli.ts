#!/usr/bin/env node
// `qubes-policy SUBCOMMAND …`: eval, lint, explain, list/get/replace/remove,
// daemon. Run without arguments for the usage text.

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs, required, UsageError } from './args.js';
import { runEvalStream } from './eval-stream.js';

const USAGE = `usage: qubes-policy SUBCOMMAND [options]

  eval    --policy-dir DIR --system-info FILE [--runtime-dir DIR] [--legacy-dir DIR]
          JSON requests on stdin ({"id","service","argument","source","target",
          "requested_source"}), one JSON answer per line on stdout
  lint    --policy-dir DIR [--runtime-dir DIR] [--legacy-dir DIR]
          file:line diagnostics; exit 1 when the policy does not load
  explain --policy-dir DIR --system-info FILE --service S [--argument +A]
          --source Q [--target T] [--requested-source Q] [--runtime-dir DIR] [--legacy-dir DIR]
          the rule that decides the request and why each earlier rule did not
  list    [--include] [--policy-dir DIR]
  get     [--include] [--policy-dir DIR] NAME
  replace [--include] [--policy-dir DIR] NAME [--token TOKEN]   (content on stdin)
  remove  [--include] [--policy-dir DIR] NAME [--token TOKEN]
          the policy admin API (policy.List/Get/Replace/Remove) run locally;
          TOKEN is the one "get" printed, "new" or "any" (default: any)
  daemon  [--config FILE] [--print-config] --socket PATH --policy-dir DIR [--runtime-dir DIR]
          [--legacy-dir DIR] (--system-info-socket PATH | --system-info FILE)
          [--ask-answer allow|deny | --ask-command CMD | --ask-socket PATH] [--log stderr|FILE] [--ready-file F]
          the qrexec policy daemon protocol on a UNIX socket; every option is
          also a key of qubes-policy-daemon.conf (docs/CONFIGURATION.md)
`;

const DIRS = ['policy-dir', 'runtime-dir', 'legacy-dir'];

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'eval': {
      const a = parseArgs(rest, [...DIRS, 'system-info']);
      // a reader that stops early (`| head`) is not an error
      process.stdout.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(0);
        throw err;
      });
      await runEvalStream(
        {
          policyDir: required(a, 'policy-dir'),
          runtimeDir: a.options.get('runtime-dir') ?? null,
          legacyDir: a.options.get('legacy-dir') ?? null,
          systemInfoFile: required(a, 'system-info'),
        },
        process.stdin,
        process.stdout,
      );
      return 0;
    }
    case 'lint':
      return (await import('./lint-cli.js')).lintMain(rest);
    case 'explain':
      return (await import('./explain.js')).explainMain(rest);
    case 'list':
    case 'get':
    case 'replace':
    case 'remove':
      return (await import('./admin-cli.js')).localAdminMain(cmd, rest);
    case 'daemon':
      return (await import('./daemon-main.js')).daemonMain(rest);
    case undefined:
    case 'help':
    case '--help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown subcommand ${cmd}`);
  }
}

/** Runs a CLI entry point: usage errors exit 2, anything unexpected exits 1 with the message. */
export async function run(entry: (argv: string[]) => Promise<number>, argv: string[]): Promise<void> {
  try {
    const code = await entry(argv);
    process.exitCode = code;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n${USAGE}`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`error: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = 1;
    }
  }
}

/** Whether this module is the program node was started with. */
export function isMainModule(url: string): boolean {
  try {
    return !!process.argv[1] && pathToFileURL(realpathSync(process.argv[1])).href === url;
  } catch {
    return false;
  }
}

if (isMainModule(import.meta.url)) await run(main, process.argv.slice(2));
