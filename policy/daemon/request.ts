// The qrexec-policy-daemon request, as dom0's qrexec daemon sends it:
// "key=value" lines (source=, intended_target=, service_and_arg=, optionally
// requested_source=, assume_yes_for_ask=yes|no, just_evaluate=yes|no;
// domain_id= and process_ident= of the older protocol are accepted and
// ignored) ended by an empty line. Kept apart from the server so that the
// fuzz tests can feed it bytes without a socket.

const REQUIRED = ['source', 'intended_target', 'service_and_arg'];
const OPTIONAL = ['assume_yes_for_ask', 'just_evaluate', 'requested_source', 'domain_id', 'process_ident'];

/** Offset just past the empty line that ends a request, or -1. */
export function findRequestEnd(buf: Buffer): number {
  if (buf[0] === 0x0a) return 1;
  const i = buf.indexOf('\n\n');
  return i < 0 ? -1 : i + 2;
}

/** The request's arguments, or null (after logging why) when it is malformed. */
export function parseDaemonRequest(raw: Buffer, fail: (msg: string) => void): Map<string, string> | null {
  if (raw.some((b) => b > 0x7f)) {
    fail('non-ASCII request');
    return null;
  }
  const args = new Map<string, string>();
  for (const line of raw.toString('latin1').split('\n')) {
    if (!line) break;
    const eq = line.indexOf('=');
    if (eq < 0) {
      fail(`line without '=': ${JSON.stringify(line)}`);
      return null;
    }
    const key = line.slice(0, eq);
    let value = line.slice(eq + 1);
    if (args.has(key)) {
      fail(`duplicate argument ${key}`);
      return null;
    }
    if (!REQUIRED.includes(key) && !OPTIONAL.includes(key)) {
      fail(`unknown argument ${key}`);
      return null;
    }
    if (key === 'assume_yes_for_ask' || key === 'just_evaluate') {
      if (value !== 'yes' && value !== 'no') {
        fail(`invalid bool value ${value} for argument ${key}`);
        return null;
      }
      value = value === 'yes' ? 'yes' : 'no';
    }
    args.set(key, value);
  }
  if (!REQUIRED.every((k) => args.has(k))) {
    fail('required argument missing');
    return null;
  }
  return args;
}
