// Shared fixtures for the policy tests: temporary policy directories and a
// small system (the domains of the conformance corpus).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SystemInfo } from '../../policy/system-info.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const corpusPath = join(repoRoot, '..', 'shared', 'conformance', 'policy', 'corpus');
/** canonical (the engine reports real paths; shared/ may be reached through a link) */
export const corpusDir = existsSync(corpusPath) ? realpathSync(corpusPath) : corpusPath;

export function systemInfo(): SystemInfo {
  return JSON.parse(readFileSync(join(corpusDir, 'system_info.json'), 'utf8')) as SystemInfo;
}

/** A temporary directory with the given files (relative path → content); removed by the returned cleanup. */
export function tempTree(files: Record<string, string | Buffer>): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'policy-test-'));
  for (const [rel, content] of Object.entries(files)) {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
  }
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The environment for child programs: without the test runner's loader hooks. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG']) if (process.env[k] !== undefined) env[k] = process.env[k];
  return { ...env, ...extra };
}

/**
 * Command and arguments that run one of the bin/ programs as a user would
 * (through /bin/sh, so that the test runner's process hooks stay out of it).
 */
export function binCommand(name: string, args: string[] = []): [string, string[]] {
  return ['/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$@"', 'sh', process.execPath, join(repoRoot, 'bin', name), ...args]];
}

export interface RunResult {
  code: number;
  out: string;
  err: string;
}

/** Runs one of the bin/ programs (see binCommand) with `input` on its
 * standard input; resolves with its exit code and what it printed. */
export function runBin(name: string, args: string[], opts: { env?: Record<string, string>; input?: string | Buffer } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [cmd, argv] = binCommand(name, args);
    const child = spawn(cmd, argv, { env: childEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
    child.stdin.end(opts.input ?? '');
  });
}
