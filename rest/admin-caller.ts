// The one way a request reaches qubesd. Every Admin API call an HTTP request
// maps to goes through an AdminCaller bound to the request's identity: it
// first asks the policy daemon exactly as the qrexec dispatcher does for a
// call from that qube (source = identity, intended target = the qube or dom0,
// service+argument = the method and its argument), and only on allow calls
// qubesd, with that identity as the source, so qubesd's own filtering of
// admin.vm.List and admin.Events applies. A dom0 identity is dom0: no policy
// question, as for dom0's own tools on qubesd.sock.
//
// Routes never build a qubesd CallSpec themselves; a call that needs a
// transport this class does not offer (a streamed body) gets its checked
// CallSpec from authorize().
import { callRaw, streamEvents, type CallOptions, type CallSpec, type EventStream, type QubesdEvent } from '../lib/qubesd-client.js';
import { askPolicy, PolicyDaemonError, type PolicyAnswer } from '../lib/policy-client.js';
import type { LimitFunction } from 'p-limit';
import { forbidden, unavailable } from './errors.js';
import { isSharedRead, type SharedReads } from './shared-reads.js';
import type { WarmConnection } from '../lib/warm-connection.js';

export interface CallerDeps {
  qubesdSocket: string;
  policySocket: string;
  /** time-out for one qubesd call (ms); 0 = none */
  callTimeoutMs: number;
  /**
   * Gateway-wide bound on connections open to qubesd and the policy daemon
   * at once: a UNIX socket's backlog is finite (a full one refuses with
   * EAGAIN), and 16 clients each listing 1000 qubes must queue, not fail.
   */
  connections: LimitFunction;
  /** Concurrent identical reads made once (shared-reads.ts); absent: every call is made. */
  sharedReads?: SharedReads;
  /** A connection to qubesd opened ahead for the next read (lib/warm-connection.ts). */
  warm?: WarmConnection;
}

/** A call the policy allowed: pass it to lib/qubesd-client.ts as is. */
export interface AuthorizedCall {
  socketPath: string;
  spec: CallSpec;
}

export class AdminCaller {
  /** Policy answers for this request: one question per (service, target). */
  private readonly decisions = new Map<string, Promise<string>>();
  /** How many Admin API calls this caller made (for the access log). */
  calls = 0;

  constructor(
    private readonly deps: CallerDeps,
    readonly identity: string,
  ) {}

  get isDom0(): boolean {
    return this.identity === 'dom0';
  }

  /**
   * Asks the policy whether the identity may call `method+arg` on `dest`;
   * resolves with the destination qubesd is to be given (as the qrexec
   * handler program names it), rejects with a 403 RestError.
   */
  private decide(method: string, dest: string, arg: string): Promise<string> {
    if (this.isDom0) return Promise.resolve(dest);
    const key = `${method}+${arg}\0${dest}`;
    let p = this.decisions.get(key);
    if (!p) {
      p = this.ask(method, dest, arg);
      this.decisions.set(key, p);
    }
    return p;
  }

  private async ask(method: string, dest: string, arg: string): Promise<string> {
    const refused = forbidden({ method, arg, target: dest }, this.identity);
    let answer: PolicyAnswer;
    try {
      answer = await this.deps.connections(() =>
        askPolicy(this.deps.policySocket, { source: this.identity, intendedTarget: dest, serviceAndArg: `${method}+${arg}` }),
      );
    } catch (e) {
      if (e instanceof PolicyDaemonError) throw unavailable('the policy daemon did not answer');
      throw e;
    }
    // `ask` resolutions have nobody to ask here: the daemon's plain answer is deny.
    if (answer.result === 'deny') throw refused;
    // as the dispatcher: Admin API services run in dom0, nowhere else
    if (answer.target !== 'dom0' && answer.target !== '@adminvm') throw refused;
    // a policy may redirect to another service; the Admin API has no use for it
    if (answer.service !== undefined && answer.service !== `${method}+${arg}`) throw refused;
    const requested = answer.requestedTarget;
    if (requested.startsWith('@')) {
      if (requested !== '@adminvm') throw refused;
      return 'dom0';
    }
    return requested;
  }

  /** Policy check only: the CallSpec to use with lib/qubesd-client.ts. */
  async authorize(method: string, dest: string, arg = '', payload: Buffer | string = ''): Promise<AuthorizedCall> {
    const qubesdDest = await this.decide(method, dest, arg);
    return { socketPath: this.deps.qubesdSocket, spec: { method, dest: qubesdDest, arg, source: this.identity, payload } };
  }

  /** One Admin API call; the OK frame's content. QubesdException on an EXCEPTION frame. */
  async callRaw(method: string, dest: string, arg = '', payload: Buffer | string = '', opts: CallOptions = {}): Promise<Buffer> {
    const { socketPath, spec } = await this.authorize(method, dest, arg, payload);
    this.calls++;
    const read = isSharedRead(method, payload);
    // a read may be made again if its spare connection turns out closed
    const warm = read ? this.deps.warm : undefined;
    const once = (): Promise<Buffer> => this.deps.connections(() => callRaw(socketPath, spec, { timeoutMs: this.deps.callTimeoutMs, warm, ...opts }));
    // a caller's own signal or time-out is not for others to share
    if (!this.deps.sharedReads || opts.signal || opts.timeoutMs !== undefined || !read) return once();
    return this.deps.sharedReads.run(`${this.identity}\0${method}\0${spec.dest}\0${arg}`, once);
  }

  async call(method: string, dest: string, arg = '', payload: Buffer | string = '', opts: CallOptions = {}): Promise<string> {
    return (await this.callRaw(method, dest, arg, payload, opts)).toString('utf8');
  }

  /** Whether the policy lets the identity make this call (no call is made). */
  async may(method: string, dest: string, arg = ''): Promise<boolean> {
    try {
      await this.decide(method, dest, arg);
      return true;
    } catch (e) {
      if ((e as { status?: number }).status === 403) return false;
      throw e;
    }
  }

  /** admin.Events (policy-checked on dom0), filtered by qubesd for this identity. */
  async events(onEvent: (e: QubesdEvent) => void, opts: CallOptions = {}): Promise<EventStream> {
    const { socketPath, spec } = await this.authorize('admin.Events', 'dom0');
    this.calls++;
    return streamEvents(socketPath, spec, onEvent, opts);
  }
}
