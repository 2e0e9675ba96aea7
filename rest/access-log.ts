// One line per request: time, token id (never the token), identity, method,
// path, status, duration and the number of Admin API calls it made. qubesd's
// own audit log has a line per call beside it. Lines are written in batches,
// at most 10 ms after their request (lib/batched-lines.ts): a line written
// through a stream for every request cost the gateway about 110 us of CPU per
// request, more than a small collection's whole answer.
import { BatchedLines, isoTime } from '../lib/batched-lines.js';

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

function accessLine(e: AccessEntry, time: number): string {
  return JSON.stringify({ time: isoTime(time), ...e, ms: Math.round(e.ms * 10) / 10 }) + '\n';
}

export function openAccessLog(where: string): AccessLog {
  const lines = new BatchedLines<AccessEntry>(where, { format: accessLine, mode: 0o600, makeDir: true, failure: 'qubes-rest: cannot write the access log' });
  return {
    write: (e) => lines.push(e),
    close: async () => lines.close(),
  };
}
