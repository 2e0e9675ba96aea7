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
  /** false: only the daemon's own messages (log_level = info) */
  calls = true;
  constructor(target: 'stderr' | 'none' | string) {
    this.out = this.open(target);
  }

  private open(target: string): NodeJS.WritableStream | null {
    if (target === 'none') return null;
    if (target === 'stderr') return process.stderr;
    this.file = createWriteStream(target, { flags: 'a' });
    return this.file;
  }

  /** Switch to another destination (SIGHUP; also reopens a rotated file). */
  async retarget(target: string): Promise<void> {
    const old = this.file;
    this.file = null;
    this.out = this.open(target);
    if (old) await new Promise<void>((res) => old.end(res));
  }

  call(r: CallRecord): void {
    if (!this.out || !this.calls) return;
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
