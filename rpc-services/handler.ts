// The handler program: qrexec starts it once per call under the service's
// name (/etc/qubes-rpc/<service> is a link to it). It trusts nothing it is
// given, checks the call, forwards it to qubesd in qubesd's protocol and
// copies the reply to standard output byte for byte. It is on the path of
// every call, so it loads only the method table and the two frame helpers.
import net from 'node:net';
import { isatty } from 'node:tty';
import { basename } from 'node:path';
import { encodeRequest, MAX_REQUEST } from '../qubesd/protocol/request.js';
import { exceptionFrame } from '../qubesd/protocol/reply.js';
import { servedService, isValidArgument, isValidQubeName, isValidTargetName, type Served } from './names.js';
import { findConfig, loadConfig } from './config.js';

export interface Sockets { admin: string; internal: string; policyDir: string | null; checkout: string | null }

export interface CallContext {
  service: string;
  served: Served;
  arg: string;
  source: string;
  /** destination as qubesd's request names it */
  dest: string;
  sockets: Sockets;
}

export class BadCall extends Error {
  constructor(readonly type: string, message: string) { super(message); }
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

/** Read standard input to EOF, refusing more than `limit` bytes. */
export async function readPayload(limit: number): Promise<Buffer> {
  if (isatty(0)) return Buffer.alloc(0);   // run by hand from a terminal: no payload
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BadCall('ProtocolError', `payload too large (more than ${limit} bytes)`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** Send one request to a qubesd socket and copy the reply to stdout, unchanged. */
export function forward(socketPath: string, request: Buffer, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    sock.once('connect', () => sock.end(request));
    sock.once('error', (e) => reject(new BadCall('QubesDaemonCommunicationError', `cannot talk to qubesd at ${socketPath}: ${e.message}`)));
    sock.pipe(out, { end: false });
    sock.once('end', () => resolve());
    // the caller went away (admin.Events): stop streaming
    out.once('error', () => { sock.destroy(); resolve(); });
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
  if (!path) return { admin: '/var/run/qubesd.sock', internal: '/var/run/qubesd.internal.sock', policyDir: null, checkout: null };
  const c = loadConfig(path);
  return { admin: c.qubesd.socket, internal: c.qubesd.internalSocket, policyDir: c.policy.dir, checkout: c.checkout };
}

/** The whole program; resolves with the exit code. */
export async function main(entry = process.argv[1], argv = process.argv.slice(2), env = process.env): Promise<number> {
  try {
    const c = describeCall(entry, argv, env, socketsFor(entry));
    switch (c.served.kind) {
      case 'admin': await serveAdmin(c); return 0;
      case 'import': return await (await import('./import.js')).serveImport(c);
      case 'policy': return await (await import('./policy-admin.js')).servePolicy(c, env);
    }
  } catch (e) {
    const [type, message] = e instanceof BadCall ? [e.type, e.message] : ['QubesException', (e as Error).message];
    process.stdout.write(exceptionFrame(type, message));
    return 1;
  }
}
