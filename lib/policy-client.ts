// Asking the policy daemon, in the qrexec-policy-daemon protocol that dom0's
// qrexec daemon speaks: "key=value" lines ended by an empty line, answered
// with "key=value" lines until the daemon closes the connection.
import net from 'node:net';

/** One question to the policy daemon, in its wire protocol's terms (the engine's own request: policy/evaluator.ts). */
export interface PolicyDaemonQuery {
  source: string;
  intendedTarget: string;
  serviceAndArg: string;
  assumeYesForAsk?: boolean;
}

export type PolicyAnswer =
  { result: 'allow'; target: string; requestedTarget: string; user: string; autostart: boolean; targetUuid?: string; service?: string } | { result: 'deny' };

export class PolicyDaemonError extends Error {}

/** The daemon answers in a few lines; qrexec reads at most 4096 bytes. */
const MAX_ANSWER = 4096;

export function askPolicy(socketPath: string, r: PolicyDaemonQuery): Promise<PolicyAnswer> {
  let msg = `source=${r.source}\nintended_target=${r.intendedTarget}\nservice_and_arg=${r.serviceAndArg}\n`;
  if (r.assumeYesForAsk) msg += 'assume_yes_for_ask=yes\n';
  msg += '\n';
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const chunks: Buffer[] = [];
    let size = 0;
    sock.once('connect', () => sock.write(msg));
    sock.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_ANSWER) {
        sock.destroy();
        reject(new PolicyDaemonError('policy daemon answer too long'));
        return;
      }
      chunks.push(d);
    });
    sock.once('end', () => {
      try {
        resolve(parsePolicyAnswer(Buffer.concat(chunks).toString('latin1')));
      } catch (e) {
        reject(e);
      }
      sock.destroy();
    });
    sock.once('error', (e) => reject(new PolicyDaemonError(`cannot reach the policy daemon at ${socketPath}: ${e.message}`)));
  });
}

/** Strict, as qrexec is: duplicate keys, a bad result or missing fields are errors. */
export function parsePolicyAnswer(text: string): PolicyAnswer {
  if (text.length === 0) throw new PolicyDaemonError('policy daemon sent no answer');
  if (text.includes('\0')) throw new PolicyDaemonError('policy daemon answer contains a NUL byte');
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  const kv = new Map<string, string>();
  for (const line of body.split('\n')) {
    const eq = line.indexOf('=');
    if (eq < 0) throw new PolicyDaemonError(`malformed policy daemon answer line ${JSON.stringify(line)}`);
    const k = line.slice(0, eq);
    if (kv.has(k)) throw new PolicyDaemonError(`policy daemon answer repeats ${k}`);
    kv.set(k, line.slice(eq + 1));
  }
  const result = kv.get('result');
  const user = kv.get('user'),
    target = kv.get('target'),
    requestedTarget = kv.get('requested_target'),
    autostart = kv.get('autostart');
  if (result === 'deny') {
    if (user !== undefined || target !== undefined || requestedTarget !== undefined || autostart !== undefined) {
      throw new PolicyDaemonError('policy daemon denied but named a target');
    }
    return { result: 'deny' };
  }
  if (result !== 'allow') throw new PolicyDaemonError(`policy daemon result ${JSON.stringify(result)}`);
  if (user === undefined || target === undefined || requestedTarget === undefined || (autostart !== 'True' && autostart !== 'False')) {
    throw new PolicyDaemonError('policy daemon allowed without user, target, requested_target and autostart');
  }
  const targetUuid = kv.get('target_uuid'),
    service = kv.get('service');
  return {
    result: 'allow',
    target,
    requestedTarget,
    user,
    autostart: autostart === 'True',
    ...(targetUuid !== undefined ? { targetUuid } : {}),
    ...(service !== undefined ? { service } : {}),
  };
}
