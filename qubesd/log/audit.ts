// The audit trail: one structured JSON line per Admin API call (dom0's calls
// included), written to stderr or a file. Qubes only logs calls with an
// option; users asked for a reliable record of who did what to which qube.
//
// A call only queues its record; the lines are formatted and written
// together, at most FLUSH_MS after the first of them, with one write() on the
// file. A write (or a stream and a thread pool round trip) for every call
// cost more than many short calls themselves, and so did formatting each line
// in the middle of its call: the same formatting run over a batch at flush
// time costs qubesd about 10 us less CPU per property.Get (1 client, 1000
// qubes, against 1.5 us measured for the formatting itself; what it saves is
// the price of running that code cold between two calls). The window is
// short, the queue is written out on close and when the process exits, and a
// SIGKILL can only take the last few milliseconds of lines with it, as it
// would take the lines a stream had not written yet.
//
// A call's line is the JSON of its record, spelt out here rather than by
// JSON.stringify (a third of the cost), and its time is formatted once per
// millisecond, not once per line; the bytes are the same.
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
/** Write earlier once this many lines are waiting (about 64 KiB of call lines). */
const FLUSH_LINES = 300;
/** Strings that JSON.stringify would only put between quotes (printable ASCII but " and \). */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function jsonString(s: string): string {
  return PLAIN.test(s) ? '"' + s + '"' : JSON.stringify(s);
}

/**
 * What JSON.stringify(r).slice(1) gives for a record of strings and
 * numbers, keys in the record's own order (the dispatcher fills them in two
 * orders).
 */
function recordFields(r: CallRecord): string {
  let out = '';
  for (const k in r) {
    const v = r[k as keyof CallRecord];
    if (v === undefined) continue;
    out += (out === '' ? '"' : ',"') + k + '":' + (typeof v === 'string' ? jsonString(v) : Number.isFinite(v) ? '' + v : JSON.stringify(v));
  }
  return out + '}';
}

export class AuditLog {
  /** file descriptor written to, -1 when logging is off */
  private fd = -1;
  private ownFd = false;
  /**
   * Lines waiting to be written, in order: a call's record (formatted at
   * flush time, with its time from `times`) or a line already formatted.
   */
  private queue: Array<CallRecord | string> = [];
  /** Date.now() of each queued record (NaN for formatted lines) */
  private times: number[] = [];
  /**
   * Flushes what is pending every FLUSH_MS while lines keep coming, and
   * stops at the first tick that finds nothing: a timer armed for every
   * batch cost more than the write (Node builds its timer list anew each
   * time).
   */
  private timer: NodeJS.Timeout | null = null;
  private failed = false;
  /** the time of the last line, formatted, and its millisecond */
  private stampMs = NaN;
  private stamp = '';
  /** that time's second, formatted up to its fraction, and its start */
  private secondMs = NaN;
  private second = '';
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

  /**
   * Queues the line of a finished call. The record is read when the line is
   * written, up to FLUSH_MS later: the caller must not change it afterwards.
   */
  call(r: CallRecord): void {
    if (this.fd < 0 || !this.calls) return;
    this.add(r, Date.now());
  }

  /**
   * new Date(ms).toISOString(): the date and time down to the second are
   * formatted once a second, the milliseconds appended (a Date and its
   * formatting for every line cost more than the rest of the line).
   */
  private stampOf(ms: number): string {
    if (ms !== this.stampMs) {
      this.stampMs = ms;
      const second = ms - (ms % 1000);
      // (a clock before 1970 has negative remainders: formatted whole)
      if (ms < 0) return (this.stamp = new Date(ms).toISOString());
      if (second !== this.secondMs) {
        this.secondMs = second;
        // "YYYY-MM-DDTHH:MM:SS."
        this.second = new Date(second).toISOString().slice(0, -4);
      }
      const frac = ms - second;
      this.stamp = this.second + (frac < 10 ? '00' : frac < 100 ? '0' : '') + frac + 'Z';
    }
    return this.stamp;
  }

  info(msg: string, extra: Record<string, unknown> = {}): void {
    if (this.fd < 0) return;
    this.add(JSON.stringify({ t: new Date().toISOString(), ev: 'info', msg, ...extra }) + '\n', NaN);
  }

  close(): Promise<void> {
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
    return Promise.resolve();
  }

  private add(entry: CallRecord | string, time: number): void {
    this.queue.push(entry);
    this.times.push(time);
    if (this.queue.length >= FLUSH_LINES) this.flush();
    else this.timer ??= setInterval(() => this.tick(), FLUSH_MS);
  }

  /** The queued lines as one text; empties the queue. */
  private take(): string {
    const { queue, times } = this;
    let text = '';
    for (let i = 0; i < queue.length; i++) {
      const e = queue[i]!;
      // the record's own fields after t and ev, without spreading it into a
      // new object
      text += typeof e === 'string' ? e : '{"t":"' + this.stampOf(times[i]!) + '","ev":"call",' + recordFields(e) + '\n';
    }
    queue.length = 0;
    times.length = 0;
    return text;
  }

  private tick(): void {
    if (this.queue.length) {
      this.flush();
    } else if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private flush(): void {
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
