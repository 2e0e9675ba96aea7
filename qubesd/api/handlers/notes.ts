// admin.vm.notes.Get/Set: free-form notes kept in <qube dir>/notes.txt.
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Call, Handlers } from '../call.js';
import { ProtocolError, QubesException } from '../../errors.js';
import { codePointSafeForDisplay } from '../../model/display-safe.js';
import { atomicWriteFile } from '../../../lib/atomic-write.js';
import { systemErrorWords } from '../../../lib/system-error.js';

const MAX_NOTES = 256000;

function notesPath(call: Call): string {
  const dir = call.dest.dirPath;
  if (!dir) throw QubesException(`${call.dest.klass} has no notes`);
  return path.join(dir, 'notes.txt');
}

/** Where and why Python's strict UTF-8 decoder stops, in its words. */
function utf8Error(b: Buffer): string | null {
  const where = (i: number, n: number) =>
    n <= 1 ? `can't decode byte 0x${b[i]!.toString(16).padStart(2, '0')} in position ${i}` : `can't decode bytes in position ${i}-${i + n - 1}`;
  for (let i = 0; i < b.length;) {
    const c = b[i]!;
    const need = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (need < 0) return `${where(i, 1)}: invalid start byte`;
    for (let j = 1; j <= need; j++) {
      const x = b[i + j];
      if (x === undefined) return `${where(i, j)}: unexpected end of data`;
      const lo = j === 1 && c === 0xe0 ? 0xa0 : j === 1 && c === 0xf0 ? 0x90 : 0x80;
      const hi = j === 1 && c === 0xed ? 0x9f : j === 1 && c === 0xf4 ? 0x8f : 0xbf;
      if (x < lo || x > hi) return `${where(i, j)}: invalid continuation byte`;
    }
    i += need + 1;
  }
  return null;
}

function sanitizeNotes(payload: Buffer): string {
  const bad = utf8Error(payload);
  if (bad) throw ProtocolError(`Unable to sanitise qube notes: 'utf-8' codec ${bad}`);
  const text = payload.toString('utf8');
  let out = '';
  for (const ch of text) out += ch === '\t' || ch === '\n' || codePointSafeForDisplay(ch.codePointAt(0)!) ? ch : '_';
  return out;
}

export const handlers: Handlers = {
  'admin.vm.notes.Get': async (call) => {
    const file = notesPath(call);
    try {
      return await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
      // Qubes adds Python's rendering of the OSError (errno, path): words only here
      throw QubesException('Failed to read notes file: ' + systemErrorWords(e));
    }
  },
  'admin.vm.notes.Set': async (call) => {
    if (call.payload.length > MAX_NOTES) {
      throw ProtocolError(`Maximum note size is ${MAX_NOTES} bytes (${call.payload.length} bytes received)`);
    }
    const file = notesPath(call);
    const notes = sanitizeNotes(call.payload);
    try {
      await atomicWriteFile(file, notes, { mode: 0o664 });
    } catch (e) {
      throw QubesException('Failed to write notes file: ' + systemErrorWords(e));
    }
  },
};
