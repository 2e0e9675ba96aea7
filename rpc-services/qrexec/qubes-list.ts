// Which qubes exist, as qubesd says: the dispatcher keeps one socket per qube.
// It lists them once and follows admin.Events for qubes added or removed,
// reconnecting if qubesd restarts.
import net from 'node:net';
import { encodeRequest } from '../../lib/protocol/request.js';

function call(socketPath: string, method: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const chunks: Buffer[] = [];
    sock.once('connect', () => sock.end(encodeRequest(method, '', 'dom0', 'dom0')));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.once('end', () => resolve(Buffer.concat(chunks)));
    sock.once('error', reject);
  });
}

/** Names of every qube but dom0, from admin.vm.List's "name class=… state=…" lines. */
export async function listQubes(socketPath: string): Promise<string[]> {
  const reply = await call(socketPath, 'admin.vm.List');
  if (reply.length < 2 || reply[0] !== 0x30) throw new Error(`admin.vm.List failed: ${reply.subarray(2).toString('utf8').split('\0').join(' ').trim()}`);
  const names: string[] = [];
  for (const line of reply.subarray(2).toString('utf8').split('\n')) {
    const [name, klass] = line.split(' ');
    if (name && klass !== 'class=AdminVM') names.push(name);
  }
  return names;
}

const WATCHED = [Buffer.from('\0domain-add\0'), Buffer.from('\0domain-delete\0')];

export class QubeWatcher {
  private events: net.Socket | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private syncing: Promise<void> = Promise.resolve();

  constructor(
    private readonly socketPath: string,
    private readonly onQubes: (names: string[]) => Promise<void>,
    private readonly log: (msg: string) => void,
  ) {}

  /** Resolves after the first successful listing. */
  async start(): Promise<void> {
    await this.sync();
    this.follow();
  }

  private sync(): Promise<void> {
    this.syncing = this.syncing.then(async () => this.onQubes(await listQubes(this.socketPath)));
    return this.syncing;
  }

  private follow(): void {
    if (this.stopped) return;
    const sock = net.connect(this.socketPath);
    this.events = sock;
    let tail = Buffer.alloc(0);
    sock.once('connect', () => sock.end(encodeRequest('admin.Events', '', 'dom0', 'dom0')));
    sock.on('data', (d: Buffer) => {
      const window = Buffer.concat([tail, d]);
      if (WATCHED.some((w) => window.includes(w))) this.sync().catch((e) => this.log(`cannot list qubes: ${(e as Error).message}`));
      tail = window.subarray(Math.max(0, window.length - 16));
    });
    sock.on('error', () => { /* 'close' follows */ });
    sock.once('close', () => {
      if (this.stopped) return;
      // qubesd went away: list again once it is back, then follow anew
      this.timer = setTimeout(() => {
        this.sync().then(() => this.follow(), () => this.follow());
      }, 1000);
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.events?.destroy();
  }
}
