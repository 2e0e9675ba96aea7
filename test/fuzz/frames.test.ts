// The soak's own checks must be right before its counts mean anything:
// literal frames, good and broken, and texts that must or must not be
// reported as leaks.
import t from 'tap';
import { checkReply, leakIn } from '../../scripts/fuzz/frames.js';

const b = (s: string) => Buffer.from(s, 'latin1');

t.test('OK and EXCEPTION frames', async (t) => {
  t.same(checkReply(b('0\0dom0 class=AdminVM\n'), true), { kind: 'ok', texts: ['dom0 class=AdminVM\n'] });
  t.same(checkReply(b('0\0'), true), { kind: 'ok', texts: [''] });
  t.same(checkReply(b('2\0QubesException\0\0boom\0'), true), { kind: 'exception', texts: ['QubesException', '', 'boom'] });
  t.equal(
    checkReply(b('2\0QubesException\0\0Unknown storage pool x\0y\0'), true).malformed,
    'EXCEPTION frame with 4 fields',
    'finding 3 as it looks on the wire',
  );
  t.equal(checkReply(b('2\0QubesException\0\0boom'), true).malformed, 'EXCEPTION frame with 2 fields and unterminated bytes');
  t.match(checkReply(b('2\0bad type\0\0m\0'), true).malformed, /not a class name/);
  t.match(checkReply(b('9\0x'), true).malformed, /unknown reply kind 0x39/);
  t.match(checkReply(b('0x'), true).malformed, /not followed by NUL/);
  t.same(checkReply(Buffer.alloc(0), true), { kind: 'empty', texts: [] }, 'a dropped connection is not malformed');
});

t.test('event streams', async (t) => {
  const est = '1\0\0connection-established\0\0';
  const ev = '1\0work\0domain-feature-set:x\0feature\0x\0value\0\0oldvalue\0\0\0';
  t.equal(checkReply(b(est + ev), false).malformed, undefined, 'empty values are fine; the empty key ends the frame');
  t.equal(checkReply(b(est + ev + '2\0QubesVMNotStartedError\0\0halted\0'), true).malformed, undefined, 'a final exception may end a stream');
  t.equal(checkReply(b(est + ev.slice(0, 20)), false).malformed, undefined, 'cut by us: fine');
  t.equal(checkReply(b(est + ev.slice(0, 20)), true).malformed, 'stream ends inside an event frame', 'cut by the daemon: malformed');
  t.match(checkReply(b(ev), true).malformed, /not connection-established/);
  t.match(checkReply(b(est + 'zz'), true).malformed, /where an event frame should start/);
});

t.test('leaks', async (t) => {
  t.match(leakIn(['Cannot read backup profile adir: EISDIR: illegal operation on a directory, read'], []), /Node error code "EISDIR:"/);
  t.match(leakIn(['open failed ENAMETOOLONG'], []), /ENAMETOOLONG/);
  t.match(leakIn(['Error: x\n    at Foo.bar (/srv/a.js:1:2)'], []), /stack frame/);
  t.match(leakIn(['no such file /tmp/qubes-fuzz-abc/var/lib'], ['/tmp/qubes-fuzz-abc']), /internal path/);
  t.match(leakIn(['internal error: Cannot read properties of undefined'], []), /unhandled error/);
  t.equal(
    leakIn(["No such domain: 'x'", 'QubesVMNotFoundError', 'Label must be in safe set: abc', 'at least one', 'EXCEPTION'], ['/tmp/qubes-fuzz-abc']),
    null,
    'ordinary Qubes messages pass',
  );
});
