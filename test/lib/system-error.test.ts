// System errors in words: what the central guard leaves of Node's error text.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { errnoWords, scrubSystemErrorText, systemErrorWords } from '../../lib/system-error.js';
import { eventFrame, exceptionFrame } from '../../lib/protocol/reply.js';

t.test("Node's and Python's renderings become words, without code, call or path", async (t) => {
  t.equal(
    scrubSystemErrorText("Cannot read backup profile x: ENAMETOOLONG: name too long, open '/etc/qubes/backup/x.conf'"),
    'Cannot read backup profile x: File name too long',
  );
  t.equal(scrubSystemErrorText('EISDIR: illegal operation on a directory, read'), 'Is a directory');
  t.equal(scrubSystemErrorText("ENOENT: no such file or directory, rename '/a/b.tmp' -> '/a/b'; giving up"), 'No such file or directory; giving up');
  t.equal(
    scrubSystemErrorText('compression filter zstd failed to start: spawn /usr/bin/zstd ENOENT'),
    'compression filter zstd failed to start: cannot run the program: No such file or directory',
  );
  t.equal(scrubSystemErrorText('libvirt connection lost: read ECONNRESET'), 'libvirt connection lost: Connection reset by peer');
  t.equal(
    scrubSystemErrorText("Failed to write notes file: [Errno 13] Permission denied: '/var/lib/qubes/appvms/x/notes.txt'"),
    'Failed to write notes file: Permission denied',
  );
  t.equal(scrubSystemErrorText("No such domain: 'ENOENT'"), "No such domain: 'ENOENT'", 'a name that looks like a code stays');
  t.equal(scrubSystemErrorText("Domain is in use: 'work'"), "Domain is in use: 'work'");
});

t.test('a real error of a system call', async (t) => {
  let err: unknown;
  try {
    readFileSync('/tmp/' + 'a'.repeat(300));
  } catch (e) {
    err = e;
  }
  t.equal(systemErrorWords(err), 'File name too long');
  t.equal(systemErrorWords(new Error('something internal at /x/y.js')), 'Unexpected error');
  t.equal(errnoWords('EBADF'), 'Bad file descriptor', "codes outside the short table use libuv's text");
});

t.test('no field of an exception or event frame can carry NUL', async (t) => {
  t.same(exceptionFrame('QubesException', 'Unknown storage pool x\0y'), Buffer.from('2\0QubesException\0\0Unknown storage pool x\\x00y\0', 'latin1'));
  t.same(
    eventFrame('work', 'feature-set:a', [
      ['value', 'v\0w'],
      ['k\0', 'x'],
    ]),
    Buffer.from('1\0work\0feature-set:a\0value\0v\\x00w\0k\\x00\0x\0\0', 'latin1'),
  );
});
