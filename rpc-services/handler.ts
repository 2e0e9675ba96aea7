// The handler program: qrexec starts it once per call under the service's
// name (/etc/qubes-rpc/<service> is a link to it). It trusts nothing it is
// given, checks the call, forwards it to qubesd in qubesd's protocol and
// copies the reply to standard output byte for byte. It is on the path of
// every call, so it loads only the method table and the two frame helpers.
import net from 'node:net';
import { fstatSync, readSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { encodeRequest, MAX_REQUEST } from '../lib/protocol/request.js';
import { exceptionFrame } from '../lib/protocol/reply.js';
import { isValidQubeName } from '../lib/qube-names.js';
import { servedService, isValidArgument, isValidTargetName } from './service-names.js';
import { findConfig, loadConfig } from '../lib/stack-config.js';
import type { CallContext, Sockets } from './call-context.js';

export type { CallContext, Sockets };

export class BadCall extends Error {
  override name = 'BadCall';
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** Which service this process was started as: its entry's name, else qrexec's variable. */
export function serviceName(entry: string | undefined, env: NodeJS.ProcessEnv): string {
  const own = entry ? basename(entry).split('+')[0]! : '';
  if (own && servedService(own)) return own;
  const full = env.QREXEC_SERVICE_FULL_NAME;
  return full ? full.split('+')[0]! : own;
}

/** Everything qrexec told us, checked; throws BadCall. */
export function describeCall(entry: string | undefined, argv: string[], env: NodeJS.ProcessEnv, sockets: Sockets): CallContext {
  const service = serviceName(entry, env);
  const served = servedService(service);
  if (!served) throw new BadCall('ProtocolError', `service not served here: ${JSON.stringify(service)}`);
  const full = env.QREXEC_SERVICE_FULL_NAME;
  const arg = argv[0] ?? env.QREXEC_SERVICE_ARGUMENT ?? (full && full.includes('+') ? full.slice(full.indexOf('+') + 1) : '');
  if (!isValidArgument(arg)) throw new BadCall('ProtocolError', 'argument contains characters qrexec does not allow');
  const source = env.QREXEC_REMOTE_DOMAIN ?? '';
  if (!isValidQubeName(source)) throw new BadCall('ProtocolError', 'QREXEC_REMOTE_DOMAIN is missing or not a qube name');
  return { service, served, arg, source, dest: requestedDest(env), sockets };
}

function requestedDest(env: NodeJS.ProcessEnv): string {
  const type = env.QREXEC_REQUESTED_TARGET_TYPE;
  if (type === 'keyword') {
    // qrexec strips the '@'; the only keyword that names dom0 is adminvm
    if (env.QREXEC_REQUESTED_TARGET_KEYWORD !== 'adminvm') throw new BadCall('ProtocolError', 'requested target keyword is not adminvm');
    return 'dom0';
  }
  if (type !== undefined && type !== '' && type !== 'name') throw new BadCall('ProtocolError', 'unknown requested target type');
  const target = env.QREXEC_REQUESTED_TARGET ?? '';
  if (!isValidTargetName(target)) throw new BadCall('ProtocolError', 'QREXEC_REQUESTED_TARGET is missing or not a qube name');
  return target;
}

const tooLarge = (limit: number) => new BadCall('ProtocolError', `payload too large (more than ${limit} bytes)`);

/**
 * Read standard input to EOF, refusing more than `limit` bytes. Plain blocking
 * reads: setting up process.stdin costs more start-up time than the call.
 */
export async function readPayload(limit: number): Promise<Buffer> {
  if (fstatSync(0).isCharacterDevice()) return Buffer.alloc(0); // a terminal (run by hand) or /dev/null
  const buf = Buffer.allocUnsafe(limit + 1);
  let size = 0;
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, size, buf.length - size, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return readPayloadAsync(buf.subarray(0, size), limit);
      throw e;
    }
    if (n === 0) return buf.subarray(0, size);
    size += n;
    if (size > limit) throw tooLarge(limit);
  }
}

/** The same for a non-blocking standard input. */
async function readPayloadAsync(first: Buffer, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [first];
  let size = first.length;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** Standard output by blocking writes, falling back to process.stdout if it is non-blocking. */
function writeOut(d: Buffer): void {
  let off = 0;
  try {
    while (off < d.length) off += writeSync(1, d, off, d.length - off);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    process.stdout.write(d.subarray(off));
  }
}

/** Send one request to a qubesd socket and copy the reply to stdout, unchanged. */
export function forward(socketPath: string, request: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    // written at once: the socket sends it as soon as it is connected
    const sock = net.connect(socketPath).end(request);
    sock.once('error', (e) => reject(new BadCall('QubesDaemonCommunicationError', `cannot talk to qubesd at ${socketPath}: ${e.message}`)));
    sock.on('data', (d: Buffer) => {
      try {
        writeOut(d);
      } catch {
        // the caller went away (admin.Events): stop streaming
        sock.destroy();
        resolve();
      }
    });
    sock.once('end', () => resolve());
  });
}

async function serveAdmin(c: CallContext): Promise<void> {
  const spec = (c.served as { spec: { payload: boolean | null } }).spec;
  const head = encodeRequest(c.service, c.arg, c.source, c.dest);
  const payload = await readPayload(MAX_REQUEST - head.length);
  if (spec.payload === false && payload.length) throw new BadCall('ProtocolError', 'unexpected payload');
  await forward(c.sockets.admin, payload.length ? Buffer.concat([head, payload]) : head);
}

export function socketsFor(entry: string | undefined): Sockets {
  const path = findConfig(entry);
  if (!path) return { admin: '/var/run/qubesd.sock', internal: '/var/run/qubesd.internal.sock', policyDir: null, policyAdminLog: null, checkout: null };
  const c = loadConfig(path);
  return {
    admin: c.qubesd.socket,
    internal: c.qubesd.internalSocket,
    policyDir: c.policy.dir,
    policyAdminLog: c.policy.adminLog ?? null,
    checkout: c.checkout,
  };
}

/** The whole program; resolves with the exit code. */
export async function main(entry = process.argv[1], argv = process.argv.slice(2), env = process.env): Promise<number> {
  try {
    const c = describeCall(entry, argv, env, socketsFor(entry));
    switch (c.served.kind) {
      case 'admin':
        await serveAdmin(c);
        return 0;
      case 'import':
        return await (await import('./import.js')).serveImport(c);
      case 'policy':
        return await (await import('./policy-admin.js')).servePolicy(c);
    }
  } catch (e) {
    const [type, message] = e instanceof BadCall ? [e.type, e.message] : ['QubesException', (e as Error).message];
    try {
      writeOut(exceptionFrame(type, message));
    } catch {
      /* nobody is listening */
    }
    return 1;
  }
}
