// Which qubes exist, as qubesd says: the dispatcher keeps one socket per qube.
// It lists them once and follows admin.Events for qubes added or removed,
// reconnecting if qubesd restarts.
import { call, QubesdException, streamEvents, type EventStream } from '../../lib/qubesd-client.js';

/** Names of every qube but dom0, from admin.vm.List's "name class=… state=…" lines. */
export async function listQubes(socketPath: string): Promise<string[]> {
  let reply: string;
  try {
    reply = await call(socketPath, { method: 'admin.vm.List', dest: 'dom0' });
  } catch (e) {
    if (e instanceof QubesdException) throw new Error(`admin.vm.List failed: ${e.type} ${e.message}`.trim());
    throw e;
  }
  const names: string[] = [];
  for (const line of reply.split('\n')) {
    const [name, klass] = line.split(' ');
    if (name && klass !== 'class=AdminVM') names.push(name);
  }
  return names;
}

const WATCHED = new Set(['domain-add', 'domain-delete']);

export class QubeWatcher {
  private events: EventStream | null = null;
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
    const stream = streamEvents(this.socketPath, { dest: 'dom0' }, (e) => {
      if (WATCHED.has(e.event)) this.sync().catch((err) => this.log(`cannot list qubes: ${(err as Error).message}`));
    });
    this.events = stream;
    const ended = (): void => {
      if (this.stopped) return;
      // qubesd went away: list again once it is back, then follow anew
      this.timer = setTimeout(() => {
        this.sync().then(
          () => this.follow(),
          () => this.follow(),
        );
      }, 1000);
    };
    stream.finished.then(ended, ended);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.events?.close();
  }
}
