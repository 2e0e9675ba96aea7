// Kernel packages ship their default command lines as small text files in the
// kernel's directory (default-kernelopts-*.txt). Computing a qube's default
// kernelopts reads one of them, and admin.vm.property.GetAll asks for it on
// every call: a short-lived cache keeps that from costing a file open per
// call, while a kernel package installed meanwhile is seen within a second.
import { readFileSync } from 'node:fs';
import { readVolatileState } from './volatile-reads.js';

const TTL_MS = 1000;
const cache = new Map<string, { at: number; text: string | null }>();

/** The file's trimmed ASCII text, or null when it cannot be read. */
export function kernelFileText(path: string, now = Date.now()): string | null {
  readVolatileState(); // a file: it changes without telling qubesd
  const hit = cache.get(path);
  if (hit && now - hit.at < TTL_MS) return hit.text;
  let text: string | null;
  try {
    text = readFileSync(path, 'ascii').trim();
  } catch {
    text = null;
  }
  if (cache.size > 256) cache.clear(); // bounded: only a handful of kernels exist
  cache.set(path, { at: now, text });
  return text;
}
