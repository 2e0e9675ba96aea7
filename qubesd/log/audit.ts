// The audit trail: one structured JSON line per Admin API call (dom0's calls
// included), written to stderr or a file. Qubes only logs calls with an
// option; users asked for a reliable record of who did what to which qube.
//
// A call only queues its record; lines are formatted and written in batches
// (lib/batched-lines.ts says why and what a crash can take). A call's line is
// the JSON of its record, spelt out here rather than by JSON.stringify (a
// third of the cost); the bytes are the same.
import { BatchedLines, isoTime, type LineTarget } from '../../lib/batched-lines.js';

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

function callLine(r: CallRecord, time: number): string {
  // the record's own fields after t and ev, without spreading it into a new object
  return '{"t":"' + isoTime(time) + '","ev":"call",' + recordFields(r) + '\n';
}

export class AuditLog {
  private readonly lines: BatchedLines<CallRecord>;
  /** false: only the daemon's own messages (log_level = info) */
  calls = true;

  constructor(target: LineTarget) {
    this.lines = new BatchedLines<CallRecord>(target, { format: callLine, mode: 0o640, failure: 'qubesd: cannot write the audit log' });
  }

  /** Switch to another destination (SIGHUP; also reopens a rotated file). */
  async retarget(target: LineTarget): Promise<void> {
    this.lines.retarget(target);
  }

  /**
   * Queues the line of a finished call. The record is read when the line is
   * written, up to FLUSH_MS later: the caller must not change it afterwards.
   */
  call(r: CallRecord): void {
    if (this.calls) this.lines.push(r);
  }

  info(msg: string, extra: Record<string, unknown> = {}): void {
    if (!this.lines.enabled) return;
    this.lines.push(JSON.stringify({ t: new Date().toISOString(), ev: 'info', msg, ...extra }) + '\n');
  }

  close(): Promise<void> {
    this.lines.close();
    return Promise.resolve();
  }
}
