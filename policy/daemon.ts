// The qrexec policy daemon: qrexec-daemon asks it, over a UNIX socket, whether
// a call may proceed. Request: "key=value" lines (source=, intended_target=,
// service_and_arg=, optionally requested_source=, assume_yes_for_ask=yes|no,
// just_evaluate=yes|no; domain_id= and process_ident= of the older protocol
// are accepted and ignored) ended by an empty line. Response: "result=allow"
// or "result=deny" and, for allow, target=/target_uuid=/autostart=/… lines,
// then EOF. A malformed request is closed without an answer, like Qubes.
//
// Optionally it also serves policy.EvalSimple and policy.EvalGUI (socket
// services qrexec connects VMs to), answering "result=allow|deny\n".
//
// System information comes from qubesd's internal socket for every request
// (or from a file, for tests and tools). When the policy says `ask`, an agent
// decides, as the GUI qube's policy agent does in Qubes: a fixed answer
// (--ask-answer), a command (--ask-command) that gets the question as JSON on
// stdin and prints "allow:TARGET" or "deny", or a policy.Ask socket service
// (--ask-socket). The agent is offered the rule's choices and default target;
// the target it picks is what the call is allowed to (Qubes'
// handle_user_response), so `ask target=dom0` answers target=dom0 with the
// caller's requested_target.

import { spawn } from 'node:child_process';
import { chmodSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { responseFor, executeAllow } from './answer.js';
import { AccessDenied } from './errors.js';
import { approveAsk, type AskResolution, type Resolution } from './engine.js';
import { PolicyWatcher } from './watcher.js';
import type { SystemInfo } from './system-info.js';

/** Decides an `ask`: the chosen target, or null for no. */
export type AskAgent = (question: AskQuestion) => Promise<string | null>;

export interface AskQuestion {
  source: string;
  service: string;
  argument: string;
  targets: string[];
  default_target: string;
  /** what the caller asked for */
  intended_target: string;
  /** the qube whose GUI shows the question */
  guivm: string;
}

export interface PolicyDaemonOptions {
  socketPath: string;
  /** also serve policy.EvalSimple / policy.EvalGUI on these sockets */
  evalSocketPath?: string;
  guiSocketPath?: string;
  watcher: PolicyWatcher;
  systemInfo: () => Promise<SystemInfo>;
  askAgent?: AskAgent;
  log?: (line: string) => void;
}

const REQUIRED = ['source', 'intended_target', 'service_and_arg'];
const OPTIONAL = ['assume_yes_for_ask', 'just_evaluate', 'requested_source', 'domain_id', 'process_ident'];

/** Reads qubesd's `internal.GetSystemInfo` over its internal socket. */
export function fetchSystemInfo(socketPath: string): Promise<SystemInfo> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    const chunks: Buffer[] = [];
    sock.on('connect', () => sock.end('internal.GetSystemInfo+ dom0 name dom0\0'));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', reject);
    sock.on('end', () => {
      const reply = Buffer.concat(chunks);
      if (reply[0] === 0x30 && reply[1] === 0) {
        try {
          resolve(JSON.parse(reply.subarray(2).toString('utf8')) as SystemInfo);
        } catch (err) {
          reject(err);
        }
      } else reject(new Error(`qubesd refused internal.GetSystemInfo: ${JSON.stringify(reply.subarray(0, 200).toString('latin1'))}`));
    });
  });
}

/**
 * An agent that always gives the same answer. "allow" picks what a user
 * accepting the dialog gets: the default target, else the intended target if
 * it is offered, else the first choice (`ask target=dom0` offers only dom0).
 */
export function fixedAskAgent(answer: 'allow' | 'deny'): AskAgent {
  if (answer === 'deny') return async () => null;
  return async (q) => q.default_target || (q.targets.includes(q.intended_target) ? q.intended_target : q.targets[0] ?? null);
}

/** The agent's "allow:TARGET" / "deny" answer; anything else is a deny. */
function agentChoice(text: string): string | null {
  const first = text.split('\n')[0]!.trim();
  return first.startsWith('allow:') && first.length > 6 ? first.slice(6) : null;
}

/**
 * An agent behind a policy.Ask socket service, called as qrexec calls a
 * local socket service from dom0: "policy.Ask dom0 name dom0\0", then the
 * JSON parameters Qubes' policy daemon sends, then EOF; the answer is
 * "allow:TARGET" or "deny".
 */
export function socketAskAgent(path: string, timeoutMs = 300_000): AskAgent {
  return (q) => new Promise((resolve) => {
    const params = { source: q.source, service: q.service, argument: q.argument, targets: q.targets, default_target: q.default_target, icons: {} };
    const sock = connect(path);
    let out = '';
    const timer = setTimeout(() => sock.destroy(), timeoutMs);
    sock.setEncoding('latin1');
    sock.once('connect', () => sock.end(`policy.Ask dom0 name dom0\0${JSON.stringify(params)}`));
    sock.on('data', (d: string) => { if (out.length < 4096) out += d; });
    sock.once('error', () => undefined);
    sock.once('close', () => { clearTimeout(timer); resolve(agentChoice(out)); });
  });
}

/** An agent that runs a shell command: question as JSON on stdin, "allow:TARGET" or "deny" on stdout. */
export function commandAskAgent(command: string): AskAgent {
  return (q) => new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('error', () => resolve(null));
    child.on('close', (code) => {
      resolve(code === 0 ? agentChoice(out) : null);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(JSON.stringify(q));
  });
}

export class PolicyDaemon {
  private readonly servers: Server[] = [];

  constructor(private readonly opts: PolicyDaemonOptions) {}

  private log(line: string): void {
    (this.opts.log ?? ((l: string) => process.stderr.write(l + '\n')))(line);
  }

  async start(): Promise<void> {
    await this.listen(this.opts.socketPath, (s) => this.onPolicyConnection(s));
    if (this.opts.evalSocketPath) await this.listen(this.opts.evalSocketPath, (s) => this.onEvalConnection(s, false));
    if (this.opts.guiSocketPath) await this.listen(this.opts.guiSocketPath, (s) => this.onEvalConnection(s, true));
  }

  private listen(path: string, handler: (s: Socket) => void): Promise<void> {
    try {
      unlinkSync(path);
    } catch {
      // no stale socket
    }
    // a client may half-close after its request and still wait for the answer
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      handler(s);
    });
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        chmodSync(path, 0o660);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers.length = 0;
  }

  private onPolicyConnection(sock: Socket): void {
    let buf = Buffer.alloc(0);
    let done = false;
    const onData = (d: Buffer): void => {
      if (done) return;
      buf = Buffer.concat([buf, d]);
      const end = findRequestEnd(buf);
      if (end < 0) {
        if (buf.length > 65536) {
          done = true;
          this.log('error parsing policy request: request too long');
          sock.destroy();
        }
        return;
      }
      done = true;
      sock.off('data', onData);
      const args = parseRequest(buf.subarray(0, end), (m) => this.log(`error parsing policy request: ${m}`));
      if (!args) {
        sock.end();
        return;
      }
      this.answer(args).then(
        (response) => sock.end(response),
        (err) => {
          this.log(`policy request failed: ${(err as Error)?.message ?? err}`);
          sock.end('result=deny\n');
        },
      );
    };
    sock.on('data', onData);
    sock.on('end', () => {
      if (!done) sock.end();
    });
  }

  /** The answer to one parsed request (without trailing newline, like Qubes). */
  async answer(args: Map<string, string>): Promise<string> {
    const source = args.get('source')!;
    const target = args.get('intended_target')!;
    const serviceAndArg = args.get('service_and_arg')!;
    const assumeYes = args.get('assume_yes_for_ask') === 'yes';
    const justEvaluate = args.get('just_evaluate') === 'yes';
    const prefix = `qrexec: ${serviceAndArg}: ${source} -> ${target}:`;
    let system: SystemInfo;
    try {
      system = await this.opts.systemInfo();
    } catch (err) {
      this.log(`${prefix} error getting system info: ${(err as Error).message}`);
      return 'result=deny';
    }
    const plus = serviceAndArg.indexOf('+');
    const service = plus < 0 ? serviceAndArg : serviceAndArg.slice(0, plus);
    const argument = plus < 0 ? '+' : serviceAndArg.slice(plus);
    const res = this.opts.watcher.current().evaluate(
      { service, argument, source, target, requestedSource: args.get('requested_source') || null }, system,
    );
    if (res.result === 'ask' && !assumeYes && !justEvaluate) return this.ask(res, system, prefix);
    const response = responseFor(res, { assumeYesForAsk: assumeYes, justEvaluate });
    this.logOutcome(prefix, res, response);
    return response;
  }

  private logOutcome(prefix: string, res: Resolution, response: string): void {
    if (res.result === 'deny' || res.result === 'error') this.log(`${prefix} denied: ${res.result === 'deny' ? res.reason : res.error}`);
    else if (/^result=allow$/m.test(response)) this.log(`${prefix} allowed`);
    else this.log(`${prefix} denied`);
  }

  private async ask(res: AskResolution, system: SystemInfo, prefix: string): Promise<string> {
    const guivm = system.domains[res.request.source]?.guivm;
    const agent = this.opts.askAgent;
    if (!guivm || !agent) {
      this.log(`${prefix} denied: ${!guivm ? 'the resolution was "ask", but source domain has no GuiVM' : 'denied for non-interactive ask'}`);
      return 'result=deny';
    }
    const chosen = await agent({
      source: res.request.source, service: res.request.service, argument: res.request.argument,
      targets: res.targetsForAsk, default_target: res.defaultTarget ?? '', intended_target: res.request.target.text, guivm,
    });
    if (chosen === null) {
      this.log(`${prefix} denied by the user`);
      return 'result=deny';
    }
    try {
      const { response, error } = executeAllow(approveAsk(res, chosen));
      if (error) this.log(`${prefix} denied: ${error.message}`);
      else this.log(`${prefix} allowed to ${chosen}`);
      return response;
    } catch (err) {
      if (!(err instanceof AccessDenied)) throw err;
      this.log(`${prefix} denied: ${err.message}`);
      return 'result=deny';
    }
  }

  /** policy.EvalSimple / policy.EvalGUI: "SERVICE+ARG REMOTE\0" header, then "source\0target". */
  private onEvalConnection(sock: Socket, checkGui: boolean): void {
    const name = checkGui ? 'policy.EvalGUI' : 'policy.EvalSimple';
    let buf = Buffer.alloc(0);
    let handled = false;
    const handle = async (): Promise<void> => {
      const sp = buf.indexOf(0x20);
      const nul = buf.indexOf(0, sp + 1);
      const [invoked, queried] = splitOnce(buf.subarray(0, sp).toString('latin1'), '+');
      const remote = buf.subarray(sp + 1, nul).toString('latin1').split(' ')[0]!;
      const body = buf.subarray(nul + 1);
      if (invoked !== name) return this.log(`${name} invoked with incorrect name ${invoked} by ${remote}`);
      if (!queried || queried.startsWith('+')) return this.log(`${name} requires an argument (the service to query), but ${remote} did not provide one`);
      const zero = body.indexOf(0);
      const source = zero < 0 ? '' : body.subarray(0, zero).toString('latin1');
      const target = zero < 0 ? '' : body.subarray(zero + 1, 96).toString('latin1');
      if (zero < 0 || !validName(source, 31) || !validName(target, 63)) return this.log(`${name}: invalid data from qube ${remote}`);
      const system = await this.opts.systemInfo();
      if (checkGui) {
        const tag = 'guivm-' + remote;
        for (const q of [source, target]) {
          if (!system.domains[q]?.tags.includes(tag)) {
            return this.log(`${name} can only be invoked by a domain that provides GUI to both the source and target domains, not ${remote}`);
          }
        }
      }
      const response = await this.answer(new Map([
        ['source', source], ['intended_target', target], ['service_and_arg', queried],
        ['assume_yes_for_ask', 'yes'], ['just_evaluate', 'yes'],
      ]));
      sock.write(response + '\n');
    };
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > 4096 + 96) sock.destroy();
    });
    sock.on('end', () => {
      if (handled) return;
      handled = true;
      handle().catch((err) => this.log(`${name} failed: ${(err as Error)?.message ?? err}`)).finally(() => sock.end());
    });
  }
}

function splitOnce(s: string, sep: string): [string, string | null] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, null] : [s.slice(0, i), s.slice(i + 1)];
}

/** A qube name as qrexec sanitises it: [A-Za-z0-9@_.-], 1..max characters. */
function validName(s: string, max: number): boolean {
  return s.length >= 1 && s.length <= max && /^[A-Za-z0-9@_.-]+$/.test(s);
}

/** Offset just past the empty line that ends a request, or -1. */
function findRequestEnd(buf: Buffer): number {
  if (buf[0] === 0x0a) return 1;
  const i = buf.indexOf('\n\n');
  return i < 0 ? -1 : i + 2;
}

/** The request's arguments, or null (after logging why) when it is malformed. */
export function parseRequest(raw: Buffer, fail: (msg: string) => void): Map<string, string> | null {
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
