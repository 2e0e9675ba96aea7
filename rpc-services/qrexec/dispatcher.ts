// The local qrexec: our stand-in for dom0's qrexec daemon. Every source qube
// has its own UNIX socket, <socketDir>/qrexec.<qube>; whoever connects there
// *is* that qube, whatever it sends. A call names a target and
// "service[+argument]"; the policy daemon decides; an allowed call runs the
// service's entry with qrexec's environment and the caller's standard input
// and output, and the caller gets the service's exit code. A refused call
// gets what qrexec-client-vm shows: "Request refused", exit code 126; the
// dispatcher's log says who asked for what and why it was refused.
// An `ask` is the policy daemon's business, as in Qubes: it asks its agent
// and answers allow (with the target the agent chose) or deny.
import net from 'node:net';
import { chmodSync, chownSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { isValidRequestedTarget, isValidServiceDescriptor } from '../service-names.js';
import { askPolicy, type PolicyAnswer } from '../../lib/policy-client.js';
import { findEntry, startService, type RunningService } from '../../lib/service-exec.js';
import { FrameError, FrameReader, Kind, frame, EXIT_NOT_FOUND } from './protocol.js';

/** Who may open one qube's socket: its owner, group and mode (unset: root, root's group, 0660). */
export interface SocketAccess {
  uid?: number;
  gid?: number;
  mode?: number;
}

export interface DispatcherOptions {
  socketDir: string;
  serviceDirs: readonly string[];
  policySocket: string;
  log: (msg: string) => void;
  /** ownership and mode of a qube's socket; null/absent: the default */
  socketAccess?: (qube: string) => SocketAccess | null;
  /** why the policy refused a call (the deciding rule), for the log */
  explainRefusal?: (source: string, target: string, serviceAndArg: string) => Promise<string>;
}

/** Standard input a caller may send before the policy has decided. */
const MAX_EARLY_INPUT = 1 << 20;
/** Refusals explained at once (each reads qubesd's system information). */
const MAX_EXPLAINING = 8;

export function socketPathFor(socketDir: string, qube: string): string {
  return join(socketDir, `qrexec.${qube}`);
}

export class QrexecDispatcher {
  private readonly servers = new Map<string, net.Server>();
  private readonly live = new Set<net.Socket>();

  constructor(private readonly o: DispatcherOptions) {
    mkdirSync(o.socketDir, { recursive: true });
  }

  get qubes(): string[] {
    return [...this.servers.keys()].sort();
  }

  /** Open a socket for each named qube and close those of qubes that are gone. */
  async setQubes(names: Iterable<string>): Promise<void> {
    const want = new Set(names);
    for (const [name, server] of this.servers) {
      if (!want.has(name)) {
        this.servers.delete(name);
        await closeServer(server, socketPathFor(this.o.socketDir, name));
      }
    }
    for (const name of want) if (!this.servers.has(name)) this.servers.set(name, await this.listen(name));
  }

  private async listen(qube: string): Promise<net.Server> {
    const path = socketPathFor(this.o.socketDir, qube);
    if (existsSync(path)) unlinkSync(path);
    // The client never half-closes (its end of input is a frame), so an EOF
    // from it means it is gone: no allowHalfOpen, and 'close' follows at once.
    const server = net.createServer((sock) => this.serve(qube, sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const access = this.o.socketAccess?.(qube) ?? null;
    try {
      if (access && (access.uid !== undefined || access.gid !== undefined)) chownSync(path, access.uid ?? -1, access.gid ?? -1);
      chmodSync(path, access?.mode ?? 0o660);
    } catch (e) {
      await closeServer(server, path);
      throw new Error(`cannot set the owner or mode of ${path}: ${(e as Error).message}`);
    }
    return server;
  }

  async close(): Promise<void> {
    for (const s of this.live) s.destroy();
    await Promise.all([...this.servers].map(([name, server]) => closeServer(server, socketPathFor(this.o.socketDir, name))));
    this.servers.clear();
  }

  private serve(source: string, sock: net.Socket): void {
    this.live.add(sock);
    const reader = new FrameReader();
    const early: Buffer[] = [];
    let earlySize = 0,
      earlyEof = false;
    let service: RunningService | null = null;
    let requested = false,
      gone = false;
    const t0 = performance.now();

    const finish = (what: string) => this.o.log(`${source}: ${what} (${(performance.now() - t0).toFixed(1)} ms)`);
    sock.on('error', () => {
      /* 'close' follows */
    });
    sock.once('close', () => {
      gone = true;
      this.live.delete(sock);
      service?.kill();
    });

    const toService = (kind: number, data: Buffer): void => {
      if (kind === Kind.STDIN) {
        if (!service) {
          earlySize += data.length;
          if (earlySize > MAX_EARLY_INPUT) {
            sock.destroy();
            return;
          }
          early.push(Buffer.from(data));
        } else if (!service.stdin.write(data)) {
          sock.pause();
          service.stdin.once('drain', () => sock.resume());
        }
      } else if (kind === Kind.STDIN_EOF) {
        if (service) service.stdin.end();
        else earlyEof = true;
      } else {
        sock.destroy();
      }
    };

    sock.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (e) {
        finish(`dropped: ${(e as FrameError).message}`);
        sock.destroy();
        return;
      }
      for (const f of frames) {
        if (!requested) {
          requested = true;
          if (f.kind !== Kind.REQUEST) {
            finish('dropped: first frame is not a request');
            sock.destroy();
            return;
          }
          void this.decide(source, f.data, sock).then(
            (started) => {
              if (!started || gone) {
                started?.kill();
                return;
              }
              service = started;
              for (const d of early) toService(Kind.STDIN, d);
              if (earlyEof) service.stdin.end();
              early.length = 0;
              pipeOut(service, sock, (code) => finish(`exit ${code}`));
            },
            (e) => {
              finish(`problem: ${(e as Error).message}`);
              sock.end(frame(Kind.PROBLEM, (e as Error).message));
            },
          );
        } else {
          toService(f.kind, f.data);
        }
      }
    });
  }

  /** Policy, then the service; null when the caller was answered already. */
  private async decide(source: string, request: Buffer, sock: net.Socket): Promise<RunningService | null> {
    const text = request.toString('latin1');
    const nul = text.indexOf('\0');
    const target = nul < 0 ? '' : text.slice(0, nul) || '@default';
    const desc = nul < 0 ? '' : text.slice(nul + 1);
    const refuse = (why: string) => {
      this.o.log(`${source}: ${desc || '?'} -> ${target || '?'}: refused: ${why}`);
      sock.end(frame(Kind.REFUSED));
      return null;
    };
    if (nul < 0 || !isValidRequestedTarget(target) || !isValidServiceDescriptor(desc)) return refuse('malformed request');
    const plus = desc.indexOf('+');
    const serviceAndArg = plus < 0 ? `${desc}+` : desc;

    let answer: PolicyAnswer;
    try {
      answer = await askPolicy(this.o.policySocket, { source, intendedTarget: target, serviceAndArg });
    } catch (e) {
      return refuse((e as Error).message);
    }
    if (answer.result === 'deny') {
      // the caller learns only what qrexec tells it; the log says why
      sock.end(frame(Kind.REFUSED));
      void this.refusalReason(source, target, serviceAndArg).then((why) => this.o.log(`${source}: ${desc} -> ${target}: refused: ${why}`));
      return null;
    }
    if (answer.target !== 'dom0' && answer.target !== '@adminvm') {
      throw new Error(`policy sent the call to ${answer.target}; this qrexec runs services in dom0 only`);
    }
    const effective = answer.service ?? serviceAndArg;
    const p = effective.indexOf('+');
    const service = effective.slice(0, p),
      arg = effective.slice(p + 1);
    const keyword = answer.requestedTarget.startsWith('@');
    const call = {
      service,
      arg,
      source,
      targetType: keyword ? ('keyword' as const) : ('name' as const),
      target: keyword ? answer.requestedTarget.slice(1) : answer.requestedTarget,
    };
    const entry = findEntry(this.o.serviceDirs, service, arg);
    sock.write(frame(Kind.ACCEPTED));
    if (!entry) {
      this.o.log(`${source}: ${effective} -> dom0: allowed, but no such service`);
      sock.end(frame(Kind.EXIT, String(EXIT_NOT_FOUND)));
      return null;
    }
    this.o.log(`${source}: ${effective} -> ${answer.requestedTarget}: allowed, running ${entry.path}`);
    return startService(entry, call, (line) => this.o.log(`${source}: ${service}: ${line}`));
  }

  /** Explanations in progress: a flood of refused calls must not become a flood of policy evaluations. */
  private explaining = 0;

  private async refusalReason(source: string, target: string, serviceAndArg: string): Promise<string> {
    if (!this.o.explainRefusal) return 'denied by policy';
    if (this.explaining >= MAX_EXPLAINING) return 'denied by policy (too many refusals at once to say which rule)';
    this.explaining++;
    try {
      return await this.o.explainRefusal(source, target, serviceAndArg);
    } catch (e) {
      return `denied by policy (no explanation: ${(e as Error).message})`;
    } finally {
      this.explaining--;
    }
  }
}

function pipeOut(service: RunningService, sock: net.Socket, done: (code: number) => void): void {
  service.stdout.on('data', (d: Buffer) => {
    if (!sock.write(frame(Kind.STDOUT, d))) {
      service.stdout.pause();
      sock.once('drain', () => service.stdout.resume());
    }
  });
  const ended = new Promise<void>((resolve) => {
    service.stdout.once('end', resolve);
    service.stdout.once('close', resolve);
  });
  void Promise.all([service.exit, ended]).then(([code]) => {
    if (!sock.destroyed) sock.end(frame(Kind.EXIT, String(code)));
    done(code);
  });
}

function closeServer(server: net.Server, path: string): Promise<void> {
  return new Promise((resolve) =>
    server.close(() => {
      try {
        unlinkSync(path);
      } catch {
        /* gone already */
      }
      resolve();
    }),
  );
}
