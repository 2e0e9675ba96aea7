// The console's ask agent: when a qrexec policy rule says `ask`, the policy
// daemon puts the question to its agent (policy/daemon/ask-agents.ts, the one
// ask-agent protocol); with `socket:PATH` it connects to PATH and speaks the
// policy agent's policy.Ask protocol (a "policy.Ask dom0 name dom0\0" header,
// then JSON parameters; the answer is "allow:<target>" or "deny"). The gateway listens on such a socket and
// relays each question to the signed-in dom0 console sessions (GET /asks, an
// SSE stream); the first answer (POST /asks/{id}) wins. No dom0 session open,
// or no answer within ask_timeout seconds, is a deny, as a dialog nobody
// answers is in Qubes.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';

export interface AskPrompt {
  id: string;
  source: string;
  service: string;
  /** "+ARG" as policy.Ask gives it ("+" for none) */
  argument: string;
  targets: string[];
  default_target: string;
  /** ms since the epoch: a deny after this */
  deadline: number;
}

type Listener = (event: AskPrompt | { id: string; done: true; answer: 'allow' | 'deny' }) => void;

/** Largest question accepted (the JSON parameters are small). */
const MAX_QUESTION = 64 * 1024;

export class AskAgent {
  private readonly pending = new Map<string, { prompt: AskPrompt; settle: (answer: string) => void }>();
  private readonly listeners = new Set<Listener>();
  private server: net.Server | null = null;

  constructor(
    private readonly socketPath: string,
    private readonly timeoutMs: number,
  ) {}

  async listen(): Promise<void> {
    mkdirSync(dirname(this.socketPath), { recursive: true });
    // a socket left by a previous gateway that did not stop cleanly
    if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
    // half-open: the dispatcher ends its side once the question is sent, and waits for the answer
    const server = net.createServer({ allowHalfOpen: true }, (sock) => this.onConnection(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    chmodSync(this.socketPath, 0o600);
    this.server = server;
  }

  async close(): Promise<void> {
    for (const p of this.pending.values()) p.settle('deny');
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
    this.server = null;
  }

  /** Questions waiting now (for a session that opens later). */
  questions(): AskPrompt[] {
    return [...this.pending.values()].map((p) => p.prompt);
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** The person's answer: false when there is no such question (any more). */
  answer(id: string, allow: boolean, target?: string): 'ok' | 'gone' | 'bad target' {
    const p = this.pending.get(id);
    if (!p) return 'gone';
    if (!allow) {
      p.settle('deny');
      return 'ok';
    }
    const chosen = target ?? p.prompt.default_target;
    if (!p.prompt.targets.includes(chosen)) return 'bad target';
    p.settle(`allow:${chosen}`);
    return 'ok';
  }

  private onConnection(sock: net.Socket): void {
    let buf = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.setTimeout(this.timeoutMs + 5000, () => sock.destroy());
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > MAX_QUESTION) sock.destroy();
    });
    sock.once('end', () => {
      const nul = buf.indexOf(0);
      let q: Partial<AskPrompt> | null = null;
      try {
        if (nul >= 0 && buf.subarray(0, nul).toString('utf8').startsWith('policy.Ask'))
          q = JSON.parse(buf.subarray(nul + 1).toString('utf8')) as Partial<AskPrompt>;
      } catch {
        q = null;
      }
      const valid =
        q && typeof q.source === 'string' && typeof q.service === 'string' && Array.isArray(q.targets) && q.targets.every((x) => typeof x === 'string');
      if (!valid || this.listeners.size === 0) {
        sock.end('deny');
        return;
      }
      const prompt: AskPrompt = {
        id: randomBytes(8).toString('hex'),
        source: q!.source!,
        service: q!.service!,
        argument: typeof q!.argument === 'string' ? q!.argument : '+',
        targets: q!.targets!,
        default_target: typeof q!.default_target === 'string' ? q!.default_target : '',
        deadline: Date.now() + this.timeoutMs,
      };
      let settled = false;
      const timer = setTimeout(() => settle('deny'), this.timeoutMs);
      const settle = (answer: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.pending.delete(prompt.id);
        if (!sock.destroyed) sock.end(answer);
        for (const l of this.listeners) l({ id: prompt.id, done: true, answer: answer === 'deny' ? 'deny' : 'allow' });
      };
      // the dispatcher gave up (its caller went away): the question is moot
      sock.once('close', () => settle('deny'));
      this.pending.set(prompt.id, { prompt, settle });
      for (const l of this.listeners) l(prompt);
    });
  }
}
