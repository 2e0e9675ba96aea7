// The audit trail: one structured JSON line per Admin API call (dom0's calls
// included), written to stderr or a file. Qubes only logs calls with an
// option; users asked for a reliable record of who did what to which qube.
//
// Lines are gathered and written together, at most FLUSH_MS after the first
// of them, with one write() on the file: a write (or a stream and a thread
// pool round trip) for every call cost more than many short calls
// themselves. The window is short, the buffer is written out on close and
// when the process exits, and a SIGKILL can only take the last few
// milliseconds of lines with it, as it would take the lines a stream had not
// written yet.
import { closeSync, openSync, writeSync } from 'node:fs';

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

/** Longest time a line waits in memory. */
const FLUSH_MS = 10;
/** Write earlier once this much is waiting. */
const FLUSH_BYTES = 64 * 1024;

export class AuditLog {
  /** file descriptor written to, -1 when logging is off */
  private fd = -1;
  private ownFd = false;
  private pending = '';
  private timer: NodeJS.Timeout | null = null;
  private failed = false;
  private readonly onExit = () => this.flush();
  /** false: only the daemon's own messages (log_level = info) */
  calls = true;

  constructor(target: 'stderr' | 'none' | string) {
    this.open(target);
  }

  private open(target: string): void {
    if (target === 'none') {
      this.fd = -1;
      this.ownFd = false;
    } else if (target === 'stderr') {
      this.fd = 2;
      this.ownFd = false;
    } else {
      this.fd = openSync(target, 'a', 0o640);
      this.ownFd = true;
    }
    if (this.fd >= 0) process.on('exit', this.onExit);
  }

  /** Switch to another destination (SIGHUP; also reopens a rotated file). */
  async retarget(target: string): Promise<void> {
    // at once, so that the next line (e.g. the reload's own) goes to the new place
    void this.close();
    this.failed = false;
    this.open(target);
  }

  call(r: CallRecord): void {
    if (this.fd < 0 || !this.calls) return;
    // the record's own fields after t and ev, without spreading it into a
    // new object (one allocation less on every call)
    this.add('{"t":"' + new Date().toISOString() + '","ev":"call",' + JSON.stringify(r).slice(1) + '\n');
  }

  info(msg: string, extra: Record<string, unknown> = {}): void {
    if (this.fd < 0) return;
    this.add(JSON.stringify({ t: new Date().toISOString(), ev: 'info', msg, ...extra }) + '\n');
  }

  close(): Promise<void> {
    if (this.fd >= 0) {
      this.flush();
      process.off('exit', this.onExit);
      if (this.ownFd) closeSync(this.fd);
      this.fd = -1;
    }
    return Promise.resolve();
  }

  private add(line: string): void {
    this.pending += line;
    if (this.pending.length >= FLUSH_BYTES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (!this.pending || this.fd < 0) return;
    const text = this.pending;
    this.pending = '';
    // stderr may be a non-blocking pipe: its stream knows how to wait
    if (this.fd === 2) {
      process.stderr.write(text);
      return;
    }
    const data = Buffer.from(text, 'utf8');
    try {
      for (let off = 0; off < data.length;) off += writeSync(this.fd, data, off);
    } catch (e) {
      // nowhere better to say it; the daemon must keep serving calls
      if (!this.failed) {
        this.failed = true;
        try {
          writeSync(2, `qubesd: cannot write the audit log: ${(e as Error).message}\n`);
        } catch {
          /* stderr gone too */
        }
      }
    }
  }
}
