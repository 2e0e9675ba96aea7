// Log lines written in batches, for logs with a line per call or request
// (qubesd's audit log, the REST gateway's access log).
//
// An entry is only queued when it is logged; the lines are formatted and
// written together, at most FLUSH_MS after the first of them, with one
// write() on the file. A write (or a stream and a thread pool round trip) for
// every line cost more than many short calls themselves, and so did
// formatting each line in the middle of its call: measured on qubesd's
// property.Get (1 client, 1000 qubes), formatting the audit line inside the
// call cost about 14 us of CPU, the same formatting over a batch at flush
// time about 1.5 us (what it saves is the price of running that code cold
// between two calls); the gateway's access log, a line written through a
// stream for every request, cost it about 110 us of CPU per request.
//
// The window is short, the queue is written out on close and when the
// process exits, and a SIGKILL can only take the last few milliseconds of
// lines with it, as it would take the lines a stream had not written yet.
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Longest time a line waits in memory. */
export const FLUSH_MS = 10;
/** Write earlier once this many lines are waiting (about 64 KiB of audit lines). */
const FLUSH_LINES = 300;

/** Where lines go: standard error, nowhere, or a file (appended to). */
export type LineTarget = 'stderr' | 'none' | string;

export interface BatchedLinesOptions<T> {
  /** the line of a queued entry (with its newline), given the time it was logged */
  format: (entry: T, time: number) => string;
  /** permissions of a file created for the log */
  mode: number;
  /** create the file's directory when missing */
  makeDir?: boolean;
  /** said on standard error when a write fails, e.g. "qubesd: cannot write the audit log" */
  failure: string;
}

export class BatchedLines<T extends object> {
  /** file descriptor written to, -1 when logging is off */
  private fd = -1;
  private ownFd = false;
  /**
   * Lines waiting to be written, in order: an entry (formatted at flush
   * time, with its time from `times`) or a line already formatted.
   */
  private readonly queue: Array<T | string> = [];
  private readonly times: number[] = [];
  /**
   * Flushes what is queued every FLUSH_MS while lines keep coming, and stops
   * at the first tick that finds nothing: a timer armed for every batch cost
   * more than the write (Node builds its timer list anew each time).
   */
  private timer: NodeJS.Timeout | null = null;
  private failed = false;
  private readonly onExit = () => this.flush();

  constructor(
    target: LineTarget,
    private readonly o: BatchedLinesOptions<T>,
  ) {
    this.open(target);
  }

  /** false when the target is `none` */
  get enabled(): boolean {
    return this.fd >= 0;
  }

  private open(target: LineTarget): void {
    if (target === 'none') {
      this.fd = -1;
      this.ownFd = false;
    } else if (target === 'stderr') {
      this.fd = 2;
      this.ownFd = false;
    } else {
      if (this.o.makeDir) mkdirSync(dirname(target), { recursive: true });
      this.fd = openSync(target, 'a', this.o.mode);
      this.ownFd = true;
    }
    if (this.fd >= 0) process.on('exit', this.onExit);
  }

  /** Switch to another destination (e.g. on SIGHUP; also reopens a rotated file). */
  retarget(target: LineTarget): void {
    this.close();
    this.failed = false;
    this.open(target);
  }

  /**
   * Queues an entry, or a line already formatted (with its newline). An
   * entry is read when its line is written, up to FLUSH_MS later: the caller
   * must not change it afterwards.
   */
  push(entry: T | string, time = Date.now()): void {
    if (this.fd < 0) return;
    this.queue.push(entry);
    this.times.push(time);
    if (this.queue.length >= FLUSH_LINES) this.flush();
    else this.timer ??= setInterval(() => this.tick(), FLUSH_MS);
  }

  /** Writes what is queued and closes a file the log opened. */
  close(): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    if (this.fd >= 0) {
      this.flush();
      process.off('exit', this.onExit);
      if (this.ownFd) closeSync(this.fd);
      this.fd = -1;
    }
  }

  private tick(): void {
    if (this.queue.length) {
      this.flush();
    } else if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** The queued lines as one text; empties the queue. */
  private take(): string {
    const { queue, times } = this;
    let text = '';
    for (let i = 0; i < queue.length; i++) {
      const e = queue[i]!;
      text += typeof e === 'string' ? e : this.o.format(e, times[i]!);
    }
    queue.length = 0;
    times.length = 0;
    return text;
  }

  flush(): void {
    if (!this.queue.length || this.fd < 0) return;
    const text = this.take();
    // stderr may be a non-blocking pipe: its stream knows how to wait
    if (this.fd === 2) {
      process.stderr.write(text);
      return;
    }
    const data = Buffer.from(text, 'utf8');
    try {
      for (let off = 0; off < data.length;) off += writeSync(this.fd, data, off);
    } catch (e) {
      // nowhere better to say it; the process must keep serving
      if (!this.failed) {
        this.failed = true;
        try {
          writeSync(2, `${this.o.failure}: ${(e as Error).message}\n`);
        } catch {
          /* stderr gone too */
        }
      }
    }
  }
}

/** the last time formatted, and its millisecond */
let stampMs = NaN;
let stamp = '';
/** that time's second, formatted up to its fraction, and its start */
let secondMs = NaN;
let second = '';

/**
 * new Date(ms).toISOString(): the date and time down to the second are
 * formatted once a second, the milliseconds appended (a Date and its
 * formatting for every line cost more than the rest of the line).
 */
export function isoTime(ms: number): string {
  if (ms !== stampMs) {
    stampMs = ms;
    const s = ms - (ms % 1000);
    // (a clock before 1970 has negative remainders: formatted whole)
    if (ms < 0) return (stamp = new Date(ms).toISOString());
    if (s !== secondMs) {
      secondMs = s;
      // "YYYY-MM-DDTHH:MM:SS."
      second = new Date(s).toISOString().slice(0, -4);
    }
    const frac = ms - s;
    stamp = second + (frac < 10 ? '00' : frac < 100 ? '0' : '') + frac + 'Z';
  }
  return stamp;
}
