// The audit trail: one structured JSON line per Admin API call (dom0's calls
// included), written to stderr or a file. Qubes only logs calls with an
// option; users asked for a reliable record of who did what to which qube.
import { createWriteStream, type WriteStream } from 'node:fs';

export interface CallRecord {
  source: string;
  method: string;
  arg: string;
  dest: string;
  /** 'ok', 'events' or the exception type name; 'dropped' for framing errors */
  outcome: string;
  message?: string;
  ms: number;
  payloadBytes: number;
  socket: string;
}

export class AuditLog {
  private out: NodeJS.WritableStream | null;
  private file: WriteStream | null = null;
  constructor(target: 'stderr' | 'none' | string) {
    if (target === 'none') this.out = null;
    else if (target === 'stderr') this.out = process.stderr;
    else { this.file = createWriteStream(target, { flags: 'a' }); this.out = this.file; }
  }

  call(r: CallRecord): void {
    if (!this.out) return;
    this.out.write(JSON.stringify({ t: new Date().toISOString(), ev: 'call', ...r }) + '\n');
  }

  info(msg: string, extra: Record<string, unknown> = {}): void {
    if (!this.out) return;
    this.out.write(JSON.stringify({ t: new Date().toISOString(), ev: 'info', msg, ...extra }) + '\n');
  }

  close(): Promise<void> {
    return new Promise((res) => (this.file ? this.file.end(res) : res()));
  }
}
