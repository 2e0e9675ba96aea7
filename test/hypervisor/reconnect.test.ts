// Connection robustness against a libvirtd of our own (test driver, run as
// an unprivileged user in a temporary directory so that it can be killed and
// restarted without disturbing the shared CI daemon other tests use):
//  - libvirtd's keepalive PINGs are answered, so an idle connection survives;
//  - a libvirtd that stops answering is detected by our own PINGs;
//  - after libvirtd restarts the backend reconnects, re-registers for events
//    and reports what changed meanwhile.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LibvirtBackend } from '../../qubesd/hypervisor/libvirt-backend.js';
import { LibvirtClient } from '../../qubesd/hypervisor/libvirt/client.js';
import { KEEPALIVE_PROGRAM, KeepaliveProc } from '../../qubesd/hypervisor/libvirt/protocol.js';
import { EventLog, skipLoudly, tinySpec, uniqueName } from './helpers.js';

const NOBODY = 65534;

class PrivateLibvirtd {
  readonly dir = mkdtempSync(join(tmpdir(), 'qubes-lvd-'));
  readonly sock = join(this.dir, 'run', 'libvirt-sock');
  private child: ChildProcess | null = null;

  constructor() {
    chmodSync(this.dir, 0o755);
    for (const d of ['run', 'home']) {
      mkdirSync(join(this.dir, d));
      chownSync(join(this.dir, d), NOBODY, NOBODY);
    }
    writeFileSync(
      join(this.dir, 'libvirtd.conf'),
      `unix_sock_dir = "${join(this.dir, 'run')}"\nauth_unix_rw = "none"\nkeepalive_interval = 1\nkeepalive_count = 2\n`,
    );
  }

  async start(): Promise<void> {
    const home = join(this.dir, 'home');
    this.child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'libvirtd', '-f', join(this.dir, 'libvirtd.conf')], {
      env: {
        PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: home,
        XDG_RUNTIME_DIR: join(this.dir, 'run'),
        XDG_CONFIG_HOME: join(home, '.config'),
        XDG_CACHE_HOME: join(home, '.cache'),
      },
      stdio: 'ignore',
    });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (
        await new Promise<boolean>((res) => {
          const s = connect(this.sock);
          s.once('connect', () => {
            s.destroy();
            res(true);
          });
          s.once('error', () => res(false));
        })
      )
        return;
      if (this.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('private libvirtd did not start');
  }

  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGCONT');
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  async remove(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function canRunPrivateDaemon(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to run libvirtd as another user';
  for (const bin of ['libvirtd', 'setpriv']) if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed`;
  return null;
}

const why = canRunPrivateDaemon();
if (why) {
  t.test('reconnection', { skip: skipLoudly(`reconnection tests (${why})`) }, async () => {});
} else {
  const daemon = new PrivateLibvirtd();
  t.teardown(() => daemon.remove());
  await daemon.start();

  t.test('idle connection survives: libvirtd PINGs are answered', async (t) => {
    let pings = 0;
    const c = new LibvirtClient({
      socketPath: daemon.sock,
      uri: 'test:///default',
      keepaliveIntervalMs: 60_000,
      onPacket: (dir, bytes) => {
        if (dir === 'in' && bytes.readUInt32BE(4) === KEEPALIVE_PROGRAM && bytes.readInt32BE(12) === KeepaliveProc.Ping) pings++;
      },
    });
    let dropped = false;
    c.on('disconnect', () => {
      dropped = true;
    });
    await c.connect();
    // libvirtd (keepalive_interval 1, count 2) drops a client that ignores
    // its pings after about 3 s.
    await new Promise((r) => setTimeout(r, 3500));
    t.ok(pings >= 2, `libvirtd pinged us (${pings} times)`);
    t.notOk(dropped, 'and kept the connection');
    t.equal((await c.listAllDomains()).length >= 1, true, 'which still works');
    await c.close();
  });

  t.test('a libvirtd that stops answering is detected by our keepalive', async (t) => {
    const c = new LibvirtClient({ socketPath: daemon.sock, uri: 'test:///default', keepaliveIntervalMs: 100, keepaliveCount: 3, reconnectMinMs: 50 });
    await c.connect();
    const lost = new Promise<Error>((r) => c.once('disconnect', r));
    daemon.signal('SIGSTOP');
    try {
      t.match((await lost).message, /keepalive timeout/);
    } finally {
      daemon.signal('SIGCONT');
    }
    await new Promise((r) => c.once('connect', r));
    t.ok(c.connected, 'reconnected once libvirtd answers again');
    await c.close();
  });

  t.test('libvirtd restart: reconnect, re-register events, report changes', async (t) => {
    const b = new LibvirtBackend({ uri: `test+unix:///default?socket=${daemon.sock}`, client: { reconnectMinMs: 50, reconnectMaxMs: 400 } });
    const conn: Array<{ connected: boolean }> = [];
    b.on('connection', (e: { connected: boolean }) => conn.push(e));
    await b.connect();
    const running = tinySpec(uniqueName('rc-run'));
    const halted = tinySpec(uniqueName('rc-def'));
    const log = new EventLog(b);
    await b.start(running);
    await b.define(halted);
    // libvirtd sends the lifecycle events of these calls after answering
    // them: once seen, they cannot arrive among what the restart reports
    await log.waitFor((e) => e.name === running.name && e.event === 'started', undefined, 'started');
    await log.waitFor((e) => e.name === halted.name && e.event === 'defined', undefined, 'defined');
    log.events.length = 0;

    await daemon.stop();
    await new Promise((r) => setImmediate(r));
    t.same(
      conn.map((e) => e.connected),
      [false],
      'disconnection reported',
    );
    const err = await b.state(running.name).then(
      () => null,
      (e: { type?: string; message: string }) => e,
    );
    t.equal(err?.type, 'QubesException', 'calls fail cleanly while libvirtd is away');
    t.match(err?.message, /not connected to libvirtd \(reconnecting\)/);

    const resync = new Promise<Array<{ name: string; state: string }>>((r) => b.once('resync', r));
    await daemon.start();
    const now = await resync;
    t.ok(
      conn.some((e) => e.connected),
      'reconnection reported',
    );
    // The test driver forgets everything on restart: both our domains vanished.
    t.notOk(
      now.some((d) => d.name === running.name || d.name === halted.name),
      'resync lists what libvirtd has now',
    );
    t.ok(
      now.some((d) => d.name === 'test' && d.state === 'Running'),
      'including its built-in running domain',
    );
    const about = (n: string) => log.events.filter((e) => e.name === n).map((e) => `${e.event}/${e.detail}`);
    t.same(about(running.name), ['stopped/resync', 'undefined/resync'], 'the running domain stopped meanwhile');
    t.same(about(halted.name), ['undefined/resync'], 'the defined one disappeared');
    t.same(about('test'), [], 'no news about an unchanged domain');

    const again = tinySpec(uniqueName('rc-after'));
    await b.start(again);
    await log.waitFor((e) => e.name === again.name && e.event === 'started', 10_000, 'events after reconnection');
    t.equal(await b.state(again.name), 'Running');
    await b.destroy(again.name);
    await b.close();
  });
}
