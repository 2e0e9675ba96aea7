// `qubes-policy lint`: loads a policy directory and prints every broken file
// as "file:line: message" (exit 1), or a one-line summary (exit 0).

import { parseArgs, required } from './args.js';
import { PolicySyntaxError } from './errors.js';
import { lintPolicy } from './loader.js';

export async function lintMain(argv: string[]): Promise<number> {
  const a = parseArgs(argv, ['policy-dir', 'runtime-dir', 'legacy-dir']);
  const report = lintPolicy({
    policyDir: required(a, 'policy-dir'),
    runtimeDir: a.options.get('runtime-dir') ?? null,
    legacyDir: a.options.get('legacy-dir') ?? null,
  });
  if (report.errors.length === 0) {
    process.stdout.write(`OK: ${report.rules} rules\n`);
    return 0;
  }
  for (const err of report.errors) {
    // syntax errors already start with file:line; other load errors name the file in the text
    process.stdout.write(err instanceof PolicySyntaxError ? `${err.message}\n` : `error: ${err.message}\n`);
  }
  process.stdout.write(`${report.errors.length} error(s)\n`);
  return 1;
}
