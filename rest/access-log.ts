// One line per request: time, token id (never the token), identity, method,
// path, status, duration and the number of Admin API calls it made. qubesd's
// own audit log has a line per call beside it.
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';

export interface AccessEntry {
  token: string | null;
  identity: string | null;
  method: string;
  path: string;
  status: number;
  ms: number;
  calls: number;
}

export interface AccessLog {
  write(e: AccessEntry): void;
  close(): Promise<void>;
}

export function openAccessLog(where: string): AccessLog {
  if (where === 'none') return { write: () => {}, close: async () => {} };
  let stream: NodeJS.WritableStream | WriteStream;
  if (where === 'stderr') stream = process.stderr;
  else {
    mkdirSync(dirname(where), { recursive: true });
    stream = createWriteStream(where, { flags: 'a', mode: 0o600 });
  }
  return {
    write: (e) => {
      stream.write(JSON.stringify({ time: new Date().toISOString(), ...e, ms: Math.round(e.ms * 10) / 10 }) + '\n');
    },
    close: () =>
      new Promise((resolve) => {
        if (stream === process.stderr) resolve();
        else (stream as WriteStream).end(() => resolve());
      }),
  };
}
