// The qrexec policy daemon's server: qrexec-daemon asks it, over a UNIX
// socket, whether a call may proceed. The request is parsed by ./request.ts;
// the response is "result=allow" or "result=deny" and, for allow,
// target=/target_uuid=/autostart=/… lines, then EOF. A malformed request is
// closed without an answer, like Qubes.
//
// Optionally it also serves policy.EvalSimple and policy.EvalGUI
// (./eval-services.ts). System information is asked for every request
// (./system-info-source.ts). When the policy says `ask`, the configured agent
// (./ask-agents.ts) is offered the rule's choices and default target; the
// target it picks is what the call is allowed to (Qubes'
// handle_user_response), so `ask target=dom0` answers target=dom0 with the
// caller's requested_target.
import { chmodSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { responseFor, executeAllow } from '../answer.js';
import { AccessDenied } from '../errors.js';
import { approveAsk, type AskResolution, type Resolution } from '../evaluator.js';
import type { PolicyWatcher } from '../watcher.js';
import type { SystemInfo } from '../system-info.js';
import type { AskAgent } from './ask-agents.js';
import { serveEvalConnection } from './eval-services.js';
import { findRequestEnd, parseDaemonRequest } from './request.js';

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

export class PolicyDaemon {
  private readonly servers: Server[] = [];

  constructor(private readonly opts: PolicyDaemonOptions) {}

  private log(line: string): void {
    (this.opts.log ?? ((l: string) => process.stderr.write(l + '\n')))(line);
  }

  async start(): Promise<void> {
    await this.listen(this.opts.socketPath, (s) => this.onPolicyConnection(s));
    const evalDeps = { answer: (a: Map<string, string>) => this.answer(a), systemInfo: () => this.opts.systemInfo(), log: (l: string) => this.log(l) };
    if (this.opts.evalSocketPath) await this.listen(this.opts.evalSocketPath, (s) => serveEvalConnection(s, false, evalDeps));
    if (this.opts.guiSocketPath) await this.listen(this.opts.guiSocketPath, (s) => serveEvalConnection(s, true, evalDeps));
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
      const args = parseDaemonRequest(buf.subarray(0, end), (m) => this.log(`error parsing policy request: ${m}`));
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
    const res = this.opts.watcher.current().evaluate({ service, argument, source, target, requestedSource: args.get('requested_source') || null }, system);
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
      source: res.request.source,
      service: res.request.service,
      argument: res.request.argument,
      targets: res.targetsForAsk,
      default_target: res.defaultTarget ?? '',
      intended_target: res.request.target.text,
      guivm,
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
}
