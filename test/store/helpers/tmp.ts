// Temporary store directories and a child process running store-child.js.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'store-child.js');
export const FIXTURE = '/work/shared/conformance/qubesd/fixtures/default/qubes.xml';

interface Teardown {
  teardown(fn: () => void): void;
}

/** A fresh directory removed when the test ends. */
export function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'qubesd-store-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Copies the store files (not the lock) to a new directory: the state a
 * crash at this instant would leave, to be opened while the original is
 * still held by this process.
 */
export function crashCopy(t: Teardown, storePath: string): string {
  const dir = tempDir(t);
  const src = dirname(storePath);
  for (const f of readdirSync(src)) if (!f.endsWith('.lock')) copyFileSync(join(src, f), join(dir, f));
  return join(dir, 'qubes.xml');
}

export function startChild(args: string[], env: Record<string, string> = {}): { child: ChildProcess; lines: AsyncIterable<string> } {
  const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  return { child, lines: createInterface({ input: child.stdout! }) };
}

/** Reads lines until one matches; fails if the child ends first. */
export async function waitForLine(lines: AsyncIterable<string>, re: RegExp): Promise<string> {
  for await (const l of lines) if (re.test(l)) return l;
  throw new Error(`child ended before printing ${re}`);
}
