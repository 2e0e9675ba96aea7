// qrexec-client-vm for the local qrexec: the same command line as the one
// in a Qubes qube (`qrexec-client-vm [options] <target> <service>[+<argument>]
// [local program [args]]`), the caller's data on standard input, the
// service's reply on standard output, and the same exit codes: the service's
// own, 126 with "Request refused" when policy says no, 125 when the call
// cannot be made. It reaches the dispatcher through the socket of the qube it
// runs as: --socket PATH or $QREXEC_SOCKET.
import net from 'node:net';
import { FrameReader, Kind, frame, EXIT_PROBLEM, EXIT_REFUSED, REFUSED_MESSAGE } from './protocol.js';

const USAGE = `usage: qrexec-client-vm [--socket PATH] [--buffer-size=SIZE] [-t|-T] [--no-filter-stdout] [--no-filter-stderr]
                        [-p PREFIX] target_vmname service[+argument] [local_program [args...]]
The dispatcher socket is --socket PATH or $QREXEC_SOCKET (<prefix>/var/run/qubes/qrexec.<qube>).`;

export interface ClientArgs {
  socket: string;
  target: string;
  service: string;
  filterStdout: boolean;
  prefix: Buffer | null;
  localProgram: string[];
}

export class UsageError extends Error {}

export function parseClientArgs(argv: string[], env: NodeJS.ProcessEnv): ClientArgs {
  let socket = env.QREXEC_SOCKET ?? '';
  let filterStdout = false;
  let prefix: Buffer | null = null;
  let i = 0;
  const value = (a: string, name: string): string => {
    if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
    if (++i >= argv.length) throw new UsageError(`${name} needs a value`);
    return argv[i]!;
  };
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    if (a === '-h' || a === '--help') throw new UsageError('');
    else if (a === '--socket' || a.startsWith('--socket=')) socket = value(a, '--socket');
    else if (a === '--buffer-size' || a.startsWith('--buffer-size=')) {
      if (!/^[0-9]+$/.test(value(a, '--buffer-size'))) throw new UsageError('Bad buffer size');
    } else if (a === '-t' || a === '--filter-escape-chars-stdout') filterStdout = true;
    else if (a === '--no-filter-escape-chars-stdout' || a === '--no-filter-stdout') filterStdout = false;
    else if (a === '-T' || a === '--filter-escape-chars-stderr' || a === '--no-filter-escape-chars-stderr' || a === '--no-filter-stderr') {
      /* the service's stderr never reaches us */
    } else if (a === '-p' || a === '--prefix-data' || a.startsWith('--prefix-data=')) prefix = Buffer.from(value(a, a === '-p' ? '-p' : '--prefix-data'));
    else throw new UsageError(`unknown option ${a}`);
  }
  const rest = argv.slice(i);
  if (rest.length < 2) throw new UsageError('target and service are required');
  if (!socket) throw new UsageError('no dispatcher socket: pass --socket PATH or set QREXEC_SOCKET');
  // "$dispvm" and friends are the shell-friendly spelling of "@dispvm"
  const target = rest[0]!.startsWith('$') ? `@${rest[0]!.slice(1)}` : rest[0]!;
  return { socket, target, service: rest[1]!, filterStdout, prefix, localProgram: rest.slice(2) };
}

/** Replace terminal control bytes, as qrexec-client-vm -t does. */
function filtered(d: Buffer): Buffer {
  const out = Buffer.from(d);
  for (let i = 0; i < out.length; i++) {
    const b = out[i]!;
    if ((b < 0x20 && b !== 0x0a && b !== 0x09 && b !== 0x0d) || b >= 0x7f) out[i] = 0x5f;
  }
  return out;
}

export async function runClient(a: ClientArgs): Promise<number> {
  const childProcess = a.localProgram.length ? await import('node:child_process') : null;
  const sock = net.connect({ path: a.socket, allowHalfOpen: true });
  const reader = new FrameReader();
  let accepted = false;
  let localExit: Promise<number> | null = null;
  let out: NodeJS.WritableStream = process.stdout;
  let input: NodeJS.ReadableStream = process.stdin;

  const startInput = () => {
    if (childProcess) {
      const child = childProcess.spawn(a.localProgram[0]!, a.localProgram.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
      out = child.stdin!;
      input = child.stdout!;
      child.stdin!.on('error', () => {
        /* local program stopped reading */
      });
      localExit = new Promise((res) => child.once('close', (code) => res(code ?? EXIT_PROBLEM)));
    }
    if (a.prefix) sock.write(frame(Kind.STDIN, a.prefix));
    input.on('data', (d: Buffer) => {
      if (!sock.write(frame(Kind.STDIN, d))) {
        input.pause();
        sock.once('drain', () => input.resume());
      }
    });
    input.once('end', () => {
      if (!sock.destroyed) sock.write(frame(Kind.STDIN_EOF));
    });
    input.on('error', () => {
      if (!sock.destroyed) sock.write(frame(Kind.STDIN_EOF));
    });
  };
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number, message?: string) => {
      if (done) return;
      done = true;
      if (message) process.stderr.write(`${message}\n`);
      sock.destroy();
      if (localExit) {
        out.end();
        void localExit.then(resolve);
      } else resolve(code);
    };
    sock.once('connect', () => sock.write(frame(Kind.REQUEST, `${a.target}\0${a.service}`)));
    sock.on('error', (e) => finish(EXIT_PROBLEM, accepted ? undefined : `qrexec-client-vm: cannot reach the qrexec dispatcher at ${a.socket}: ${e.message}`));
    sock.once('close', () => finish(EXIT_PROBLEM, accepted ? undefined : 'qrexec-client-vm: the qrexec dispatcher closed the connection'));
    sock.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (e) {
        finish(EXIT_PROBLEM, `qrexec-client-vm: ${(e as Error).message}`);
        return;
      }
      for (const f of frames) {
        switch (f.kind) {
          case Kind.ACCEPTED:
            accepted = true;
            startInput();
            break;
          case Kind.REFUSED:
            finish(EXIT_REFUSED, REFUSED_MESSAGE);
            return;
          case Kind.PROBLEM:
            finish(EXIT_PROBLEM, f.data.toString('utf8'));
            return;
          case Kind.STDOUT:
            if (!out.write(a.filterStdout ? filtered(f.data) : f.data)) {
              sock.pause();
              out.once('drain', () => sock.resume());
            }
            break;
          case Kind.EXIT:
            finish(Number(f.data.toString('latin1')) || 0);
            return;
          default:
            finish(EXIT_PROBLEM, 'qrexec-client-vm: unexpected frame from the dispatcher');
            return;
        }
      }
    });
  });
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  let args: ClientArgs;
  try {
    args = parseClientArgs(argv, process.env);
  } catch (e) {
    const msg = (e as Error).message;
    process.stderr.write(`${msg ? `qrexec-client-vm: ${msg}\n` : ''}${USAGE}\n`);
    process.exit(2);
  }
  const code = await runClient(args);
  // the reply may still be on its way to a slow reader; exit once it is written
  process.stdout.write('', () => process.exit(code));
}
