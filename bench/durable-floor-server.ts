// The durable floor measured end to end, in its own process: the
// conformance floor server (read a request to EOF, answer a fixed OK frame)
// that, before answering, makes a journal-sized record durable on the disk
// under DIR, from its one thread, as qubesd does for a lone client.
//   node dist/bench/durable-floor-server.js SOCKET DIR append|dsync [BYTES]
//  - append: write() at the end of the file, then fdatasync(): what
//    ../shared/conformance/tools/fsync-floor.c times;
//  - dsync: pwrite() into space written ahead with zeros, on a file opened
//    O_DSYNC: the write qubesd's journal makes (qubesd/store/store.ts).
// Why it exists beside the computed durable floor (the floor's round trip
// plus fsync-floor's time): a call that waits a quarter of a millisecond on
// the disk leaves both the server's and the client's CPUs idle that long,
// and waking them costs more than the short waits of the floor's round trip;
// no server that waits for its disk escapes that cost, and the computed
// figure leaves it out. Prints "ready" once listening.
import net from 'node:net';
import { closeSync, fdatasyncSync, openSync, unlinkSync, writeSync, constants } from 'node:fs';
import { join } from 'node:path';

const [path, dir, mode = 'append', bytesArg = '150'] = process.argv.slice(2);
if (!path || !dir || (mode !== 'append' && mode !== 'dsync')) {
  process.stderr.write('usage: durable-floor-server SOCKET DIR append|dsync [BYTES]\n');
  process.exit(2);
}
const record = Buffer.alloc(Number(bytesArg), 0x61);
const reply = Buffer.from('0\0');
const file = join(dir, `durable-floor.${process.pid}`);
/** room written ahead for `dsync` (then started over: the floor keeps no data) */
const AHEAD = 4 << 20;
let fd: number;
let at = 0;
if (mode === 'append') {
  fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND, 0o600);
} else {
  fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | constants.O_DSYNC, 0o600);
  const zeros = Buffer.alloc(1 << 20);
  for (let off = 0; off < AHEAD; off += zeros.length) writeSync(fd, zeros, 0, zeros.length, off);
}
const durable = (): void => {
  if (mode === 'append') {
    writeSync(fd, record);
    fdatasyncSync(fd);
    return;
  }
  if (at + record.length > AHEAD) at = 0;
  writeSync(fd, record, 0, record.length, at);
  at += record.length;
};
const cleanup = (): void => {
  try {
    closeSync(fd);
    unlinkSync(file);
  } catch {
    /* already gone */
  }
};
process.on('exit', cleanup);
process.on('SIGTERM', () => process.exit(0));
try {
  unlinkSync(path);
} catch {
  /* none there */
}
net
  .createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.on('data', () => {});
    s.on('end', () => {
      durable();
      s.end(reply);
    });
  })
  .listen(path, () => console.log('ready'));
