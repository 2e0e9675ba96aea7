// The soak itself: a live installation (qubesd, policy daemon, qrexec
// dispatcher) under random and mutated calls, misbehaving clients and event
// floods, in cycles. Each cycle ends with a quiet moment in which qubesd's
// descriptors must be back near their baseline; every few cycles qubesd is
// SIGKILLed right after an acknowledged write and must come back on the same
// store with that write in it. Findings are counted by kind, with examples.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeRequest } from '../../lib/protocol/request.js';
import { CHECKOUT } from '../../rpc-services/install.js';
import { canConnect } from '../../rpc-services/stack.js';
import { frame, Kind } from '../../rpc-services/qrexec/protocol.js';
import { call, dispatcherCall, subscribe, vanish, type Outcome, type Subscriber } from './clients.js';
import { checkReply, leakIn } from './frames.js';
import { generate, type Generated, type World } from './requests.js';
import { HOSTILE, hostileName, Rng } from './random.js';
import { procStats, System, type Part } from './system.js';

export interface SoakOptions {
  seconds: number;
  seed: number;
  /** parallel request workers */
  workers: number;
  cycleSeconds: number;
  /** SIGKILL and restart qubesd every this many cycles */
  killEvery: number;
  /** qubesd's resident memory must stay below this */
  maxRssMB: number;
  /** descriptors allowed above the baseline once every client is gone */
  fdSlack: number;
  /** event flood size per cycle */
  silentSubscribers: number;
  floodEvents: number;
  /** size of each flood event's feature value */
  floodValueKB: number;
  keep: boolean;
  log: (line: string) => void;
}

export interface Summary {
  seconds: number;
  seed: number;
  requests: number;
  replies: { ok: number; exception: number; events: number; dropped: number };
  malformed: number;
  leaks: number;
  crashes: number;
  hangs: number;
  /** probe calls made, and those not judged because the machine itself was too slow */
  probes: number;
  probesOverloaded: number;
  unexpectedDrops: number;
  fdLeaks: number;
  memoryOverLimit: number;
  lostWrites: number;
  storeFailures: number;
  restarts: number;
  peakRssMB: number;
  peakFds: number;
  baselineFds: number;
  dispatcher: { calls: number; accepted: number; refused: number; problems: number; malformed: number; leaks: number };
  findings: number;
}

/**
 * OK replies that show configured paths by design: a pool's dir_path, a
 * backup's destination, and the import file the (trusted) handler program
 * is given on the internal socket.
 */
const SHOWS_PATHS = new Set(['admin.pool.Info', 'admin.pool.UsageDetails', 'admin.vm.volume.Info', 'admin.backup.Info', 'internal.vm.volume.ImportBegin']);
const MAX_EXAMPLES_PER_KIND = 5;

export async function runSoak(o: SoakOptions): Promise<{ summary: Summary; examples: Map<string, string[]> }> {
  const rng = new Rng(o.seed);
  const prefix = mkdtempSync(join(tmpdir(), 'qubes-fuzz-'));
  const poolRoot = mkdtempSync(join(tmpdir(), 'qubes-fuzz-pools-'));
  const s: Summary = {
    seconds: o.seconds,
    seed: o.seed,
    requests: 0,
    replies: { ok: 0, exception: 0, events: 0, dropped: 0 },
    malformed: 0,
    leaks: 0,
    crashes: 0,
    hangs: 0,
    probes: 0,
    probesOverloaded: 0,
    unexpectedDrops: 0,
    fdLeaks: 0,
    memoryOverLimit: 0,
    lostWrites: 0,
    storeFailures: 0,
    restarts: 0,
    peakRssMB: 0,
    peakFds: 0,
    baselineFds: 0,
    dispatcher: { calls: 0, accepted: 0, refused: 0, problems: 0, malformed: 0, leaks: 0 },
    findings: 0,
  };
  const examples = new Map<string, string[]>();
  const finding = (kind: keyof Summary | `dispatcher.${keyof Summary['dispatcher']}`, detail: string) => {
    if (kind.startsWith('dispatcher.')) s.dispatcher[kind.slice(11) as keyof Summary['dispatcher']]++;
    else (s[kind as keyof Summary] as number)++;
    s.findings++;
    const list = examples.get(kind) ?? [];
    if (list.length < MAX_EXAMPLES_PER_KIND) {
      list.push(detail);
      examples.set(kind, list);
      o.log(`finding: ${kind}: ${detail}`);
    }
  };

  const sys = new System(prefix);
  const c = sys.config;
  const internalPaths = [prefix, CHECKOUT];
  // qubesd's epoch changes at every restart: a call in flight then may go unanswered
  let epoch = 0;
  let stopping = false;
  sys.onUnexpectedExit = (p: Part, code, signal) => {
    if (stopping) return;
    finding('crashes', `${p.name} exited by itself (${code ?? signal}): ${p.stderr().slice(-1500)}`);
  };

  // the scene: a template, two qubes that stay, a management qube for the qrexec path
  writeFileSync(
    join(c.policy.dir, '30-fuzz.policy'),
    [
      'admin.vm.List * fz-mgmt @adminvm allow target=dom0',
      'admin.vm.List * fz-mgmt @anyvm allow target=dom0',
      'admin.vm.feature.Get * fz-mgmt @anyvm allow target=dom0',
      'admin.vm.property.Get * fz-mgmt @anyvm allow target=dom0',
      'admin.Events * fz-mgmt @adminvm allow target=dom0',
      'policy.List * fz-mgmt @adminvm allow target=dom0',
      '',
    ].join('\n'),
  );
  const backups = join(prefix, 'backups');
  mkdirSync(backups);
  writeFileSync(
    join(c.qubesd.backupProfileDir, 'fz.conf'),
    `include: [fz-work]\ndestination_vm: dom0\ndestination_path: ${backups}\npassphrase_text: x\ncompression: False\n`,
  );
  writeFileSync(join(c.qubesd.backupProfileDir, 'broken.conf'), 'include: [\n');
  mkdirSync(join(c.qubesd.backupProfileDir, 'adir.conf'));

  const admin = c.qubesd.socket,
    internal = c.qubesd.internalSocket;
  const dom0 = async (method: string, dest = 'dom0', arg = '', payload = ''): Promise<Buffer> => {
    const out = await call(admin, encodeRequest(method, arg, 'dom0', dest, payload), { timeoutMs: 20_000 });
    if (out.buf[0] !== 0x30) throw new Error(`${method} ${dest} ${arg}: ${out.buf.subarray(2).toString('utf8').split('\0').join(' ')}`);
    return out.buf.subarray(2);
  };
  const cleanup = async () => {
    stopping = true;
    control.stop();
    await sys.stopAll();
    if (!o.keep) {
      rmSync(prefix, { recursive: true, force: true });
      rmSync(poolRoot, { recursive: true, force: true });
    }
  };

  const control = await startControl(join(prefix, 'control.sock'));
  try {
    await sys.startAll();
    await dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=fz-tpl label=black');
    await dom0('admin.vm.Create.AppVM', 'dom0', 'fz-tpl', 'name=fz-work label=red');
    await dom0('admin.vm.Create.AppVM', 'dom0', 'fz-tpl', 'name=fz-mgmt label=green');
    const lines = async (m: string, d = 'dom0') => (await dom0(m, d)).toString('utf8').split('\n').filter(Boolean);
    const world: World = {
      stable: ['fz-tpl', 'fz-work', 'fz-mgmt'],
      scratch: ['fz-c0', 'fz-c1', 'fz-c2', 'fz-c3'],
      properties: (await lines('admin.vm.property.List', 'fz-work')).map((l) => l.split(' ')[0]!),
      labels: await lines('admin.label.List'),
      pools: [...(await lines('admin.pool.List')), 'fzp0', 'fzp1'],
      profiles: ['fz', 'broken', 'adir', 'missing', 'example'],
      poolRoot,
    };
    const mgmtSocket = join(c.qrexec.socketDir, 'qrexec.fz-mgmt');
    for (let i = 0; i < 400 && !existsSync(mgmtSocket); i++) await new Promise((r) => setTimeout(r, 25));

    let overLimitThisCycle = false;
    let cycle = 0;
    const sample = () => {
      const pid = sys.pid('qubesd');
      const st = pid ? procStats(pid) : null;
      if (st) {
        s.peakRssMB = Math.max(s.peakRssMB, Math.round(st.rssMB));
        s.peakFds = Math.max(s.peakFds, st.fds);
        if (st.rssMB > o.maxRssMB && !overLimitThisCycle) {
          overLimitThisCycle = true;
          finding('memoryOverLimit', `${st.rssMB.toFixed(0)} MB resident (limit ${o.maxRssMB} MB) in cycle ${cycle}`);
        }
      }
      return st;
    };
    const settle = async () => {
      await new Promise((r) => setTimeout(r, 1500));
      return sample();
    };
    let baseline = (await settle())!;
    s.baselineFds = baseline.fds;
    o.log(`qubesd up: pid ${sys.pid('qubesd')}, ${baseline.rssMB.toFixed(0)} MB, ${baseline.fds} fds; prefix ${prefix}`);

    const timeByMethod = new Map<string, { n: number; ms: number; max: number }>();
    const account = (g: Generated, out: Outcome, startEpoch: number) => {
      s.requests++;
      const tm = timeByMethod.get(g.method) ?? { n: 0, ms: 0, max: 0 };
      tm.n++;
      tm.ms += out.ms;
      tm.max = Math.max(tm.max, out.ms);
      timeByMethod.set(g.method, tm);
      const v = checkReply(out.buf, out.complete);
      if (v.malformed) finding('malformed', `${g.method}: ${v.malformed}; request ${JSON.stringify(g.bytes.subarray(0, 160).toString('latin1'))}`);
      if (v.kind === 'empty') s.replies.dropped++;
      else s.replies[v.kind]++;
      if (out.timedOut && out.buf.length === 0) finding('hangs', `${g.method}: no reply within the call deadline`);
      else if (v.kind === 'empty' && !g.expectDrop && !out.error && startEpoch === epoch) {
        finding('unexpectedDrops', `${g.method}: connection closed without a reply; request ${JSON.stringify(g.bytes.subarray(0, 160).toString('latin1'))}`);
      }
      const leak = leakIn(v.texts, v.kind === 'ok' && SHOWS_PATHS.has(g.method) ? [] : internalPaths);
      if (leak) finding('leaks', `${g.method}: ${leak}`);
    };

    const deadline = Date.now() + o.seconds * 1000;
    // the probe: a plain call must be answered within 2 s. A control server
    // in its own process is asked at the same time: when even it is slow,
    // the machine is overloaded and the probe says nothing about qubesd.
    const probeLoop = async (until: number, phase: string) => {
      while (Date.now() < until && !stopping) {
        const e0 = epoch;
        const [out, ctl] = await Promise.all([
          call(admin, encodeRequest('admin.vm.List', '', 'dom0', 'dom0'), { timeoutMs: 2000 }),
          call(control.socket, Buffer.from('ping'), { timeoutMs: 2000 }),
        ]);
        s.probes++;
        if (e0 === epoch && !out.timedOut && out.buf[0] !== 0x30)
          finding('hangs', `probe admin.vm.List (${phase}) answered ${JSON.stringify(out.buf.subarray(0, 200).toString('latin1'))}`);
        else if (e0 === epoch && out.timedOut) {
          if (ctl.timedOut || ctl.ms > 1000) s.probesOverloaded++;
          else finding('hangs', `probe admin.vm.List (${phase}): no answer within 2 s (the control answered in ${ctl.ms} ms)`);
        }
        sample();
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    let survive = 0;
    while (Date.now() < deadline) {
      cycle++;
      overLimitThisCycle = false;
      const stormEnd = Math.min(deadline, Date.now() + o.cycleSeconds * 1000);
      const running: Array<Promise<unknown>> = [];
      const socketOf = (g: Generated) => (g.socket === 'admin' ? admin : internal);

      // request workers
      for (let w = 0; w < o.workers; w++) {
        running.push(
          (async () => {
            while (Date.now() < stormEnd && !stopping) {
              const g = generate(rng, world);
              const e0 = epoch;
              const r = rng.next();
              // a slow writer sends its request in about 20 pieces over up to 2 s
              const opts =
                r < 0.03
                  ? { slowWrite: { chunk: Math.max(1, Math.ceil(g.bytes.length / 20)), delayMs: 10 + rng.int(90) }, timeoutMs: 40_000 }
                  : r < 0.06
                    ? { readPauseMs: 200 + rng.int(1500) }
                    : {};
              account(g, await call(socketOf(g), g.bytes, opts), e0);
            }
          })(),
        );
      }
      // vanishing clients
      running.push(
        (async () => {
          while (Date.now() < stormEnd && !stopping) {
            const g = generate(rng, world);
            await vanish(socketOf(g), g.bytes, rng.int(g.bytes.length + 1), rng.int(50), rng.chance(0.5));
            await new Promise((r) => setTimeout(r, 20));
          }
        })(),
      );
      running.push(probeLoop(stormEnd, 'random calls'));
      // a burst of 200 parallel connections
      running.push(
        (async () => {
          await new Promise((r) => setTimeout(r, rng.int(o.cycleSeconds * 500)));
          const e0 = epoch;
          await Promise.all(
            Array.from({ length: 200 }, async (_, i) => {
              const g: Generated = {
                socket: 'admin',
                method: 'admin.vm.property.Get',
                expectDrop: false,
                bytes: encodeRequest('admin.vm.property.Get', rng.pick(world.properties), 'dom0', world.stable[i % 3]!),
              };
              account(g, await call(admin, g.bytes), e0);
            }),
          );
        })(),
      );
      // the qrexec path: the management qube's dispatcher socket
      if (existsSync(mgmtSocket)) {
        running.push(
          (async () => {
            while (Date.now() < stormEnd && !stopping) {
              await dispatcherRound(rng, mgmtSocket, world, s, finding, internalPaths);
            }
          })(),
        );
      }
      await Promise.all(running);

      // the event flood, in a phase of its own (the probe goes on), so that
      // a daemon it slows down does not starve the rest of the cycle
      const floodEnd = Math.min(deadline + 10_000, Date.now() + o.cycleSeconds * 1000);
      await Promise.all([
        probeLoop(floodEnd, 'event flood'),
        (async () => {
          const subs: Subscriber[] = [];
          const req = encodeRequest('admin.Events', '', 'dom0', 'dom0');
          for (let i = 0; i < o.silentSubscribers; i++) subs.push(subscribe(admin, req, 'never'));
          for (let i = 0; i < 20; i++) subs.push(subscribe(admin, req, 'slow'));
          const e0 = epoch;
          let fired = 0;
          // 16 writers at once, so that group commit keeps the flood fast
          await Promise.all(
            Array.from({ length: 16 }, async (_, k) => {
              while (fired < o.floodEvents && Date.now() < floodEnd && !stopping) {
                const n = fired++;
                const g: Generated = {
                  socket: 'admin',
                  method: 'admin.vm.feature.Set',
                  expectDrop: false,
                  bytes: encodeRequest('admin.vm.feature.Set', `flood${k}`, 'dom0', 'fz-work', `${n}:` + 'v'.repeat(o.floodValueKB * 1024)),
                };
                account(g, await call(admin, g.bytes), e0);
                if (n % 25 === 0) sample();
              }
            }),
          );
          await new Promise((r) => setTimeout(r, 500));
          const during = sample();
          o.log(
            `event flood: ${fired} feature.Set of ${o.floodValueKB} KiB to ${subs.length} subscribers (${o.silentSubscribers} never reading); qubesd ${during?.rssMB.toFixed(0)} MB, ${during?.fds} fds`,
          );
          for (const sub of subs) {
            if (sub.mode === 'slow') {
              const v = checkReply(sub.received(), sub.closedByPeer());
              if (v.malformed) finding('malformed', `admin.Events (slow reader): ${v.malformed}`);
              const leak = leakIn(v.texts, internalPaths);
              if (leak) finding('leaks', `admin.Events: ${leak}`);
            }
            sub.close();
          }
          await Promise.all(subs.map((x) => x.gone));
        })(),
      ]);

      // quiet: no event fires any more. Streams opened, read up to their first
      // frame and closed now must be noticed as closed without an event.
      for (let i = 0; i < 100 && !stopping; i++) await subscribe(admin, encodeRequest('admin.Events', '', 'dom0', 'dom0'), 'first').gone;
      // every client is gone: descriptors and memory must come back down
      const quiet = await settle();
      if (quiet) {
        if (quiet.fds > baseline.fds + o.fdSlack)
          finding('fdLeaks', `cycle ${cycle}: ${quiet.fds} descriptors open with no client connected (baseline ${baseline.fds})`);
      }
      o.log(`cycle ${cycle}: ${s.requests} requests, rss ${quiet?.rssMB.toFixed(0)} MB, fds ${quiet?.fds}, findings ${s.findings}`);
      const slowest = [...timeByMethod].sort((a, b) => b[1].ms - a[1].ms).slice(0, 6);
      o.log(`  where the time went: ${slowest.map(([m, x]) => `${m} ${x.n}x avg ${Math.round(x.ms / x.n)} max ${x.max} ms`).join('; ')}`);

      // durability: an acknowledged write survives SIGKILL, and the store loads again
      if ((cycle % o.killEvery === 0 || (Date.now() >= deadline && s.restarts === 0)) && !stopping) {
        survive++;
        const value = `${o.seed}-${survive}`;
        let acked = false;
        try {
          await dom0('admin.vm.feature.Set', 'fz-work', 'fz-survive', value);
          acked = true;
        } catch (e) {
          o.log(`durability write refused: ${(e as Error).message}`);
        }
        epoch++;
        await sys.kill('qubesd', 'SIGKILL');
        s.restarts++;
        try {
          await sys.start('qubesd');
          const got = (await dom0('admin.vm.feature.Get', 'fz-work', 'fz-survive')).toString();
          if (acked && got !== value) finding('lostWrites', `after SIGKILL fz-survive is ${JSON.stringify(got)}, expected ${JSON.stringify(value)}`);
          baseline = (await settle()) ?? baseline;
        } catch (e) {
          finding('storeFailures', `qubesd did not come back on its store after SIGKILL: ${(e as Error).message.slice(0, 1500)}`);
          break;
        }
      }
      // a crashed qubesd is started again (the crash is already counted)
      if (!sys.pid('qubesd') && !stopping) {
        epoch++;
        try {
          await sys.start('qubesd');
          baseline = (await settle()) ?? baseline;
        } catch (e) {
          finding('storeFailures', `qubesd did not start again after a crash: ${(e as Error).message.slice(0, 1500)}`);
          break;
        }
      }
      rmSync(backups, { recursive: true, force: true });
      mkdirSync(backups, { recursive: true });
    }
  } finally {
    await cleanup();
  }
  return { summary: s, examples };
}

/**
 * A trivial server in its own process that answers like a fast qubesd:
 * how long it takes is how loaded the machine is.
 */
async function startControl(socket: string): Promise<{ socket: string; stop(): void }> {
  const code = `require('net').createServer({ allowHalfOpen: true }, (s) => { s.on('data', () => {}); s.on('error', () => {}); s.on('end', () => s.end('0\\0')); }).listen(process.argv[1]);`;
  const proc = spawn(process.execPath, ['-e', code, socket], { stdio: 'ignore', env: { PATH: process.env.PATH ?? '' } });
  for (let i = 0; i < 400 && !(await canConnect(socket)); i++) await new Promise((r) => setTimeout(r, 25));
  return {
    socket,
    stop: () => {
      proc.kill('SIGKILL');
    },
  };
}

type Finding = (kind: `dispatcher.${keyof Summary['dispatcher']}`, detail: string) => void;

const DISPATCHER_SERVICES = [
  'admin.vm.List',
  'admin.vm.feature.Get+gui',
  'admin.vm.property.Get+label',
  'admin.Events',
  'policy.List',
  'admin.vm.Create.AppVM+fz-tpl',
  'internal.GetSystemInfo',
  'qubes.Filecopy',
  'admin.vm.volume.Import+private',
];

/** One call through the dispatcher: a proper one, a hostile one, or broken frames. */
async function dispatcherRound(rng: Rng, socket: string, w: World, s: Summary, finding: Finding, paths: string[]): Promise<void> {
  const r = rng.next();
  let bytes: Buffer;
  let broken = true;
  let service = rng.pick(DISPATCHER_SERVICES);
  const target = r < 0.5 ? rng.pick(['dom0', '@adminvm', ...w.stable]) : hostileName(rng, ['dom0', ...w.stable]);
  if (r < 0.1) bytes = rng.bytes(rng.length(200));
  else if (r < 0.15) bytes = Buffer.concat([Buffer.from([Kind.REQUEST]), Buffer.from([0xff, 0xff, 0xff, 0xff]), rng.bytes(16)]);
  else {
    if (rng.chance(0.3)) service = rng.chance(0.5) ? hostileName(rng, DISPATCHER_SERVICES) : `${service.split('+')[0]}+${rng.pick(HOSTILE)}`;
    const payload = rng.chance(0.2) ? rng.bytes(rng.length(2000)) : Buffer.alloc(0);
    bytes = Buffer.concat([
      frame(Kind.REQUEST, Buffer.from(`${target}\0${service}`, 'latin1')),
      ...(payload.length ? [frame(Kind.STDIN, payload)] : []),
      frame(Kind.STDIN_EOF),
    ]);
    broken = false;
  }
  s.dispatcher.calls++;
  const out = await dispatcherCall(socket, bytes, broken);
  if (out.frameError) {
    finding('dispatcher.malformed', `frames from the dispatcher do not parse: ${out.frameError}`);
    return;
  }
  if (out.timedOut) {
    finding('dispatcher.malformed', `no answer within 20 s to ${JSON.stringify(bytes.subarray(0, 80).toString('latin1'))}`);
    return;
  }
  const kinds = out.frames.map((f) => String.fromCharCode(f.kind)).join('');
  if (kinds === 'D') {
    s.dispatcher.refused++;
    return;
  }
  if (kinds === '') return; // broken request: dropped
  const problem = out.frames.find((f) => f.kind === Kind.PROBLEM);
  if (problem) {
    s.dispatcher.problems++;
    const leak = leakIn([problem.data.toString('utf8')], paths);
    if (leak) finding('dispatcher.leaks', `PROBLEM frame: ${leak}`);
    return;
  }
  if (!/^AO*X$/.test(kinds) && !(kinds.startsWith('A') && !out.complete)) {
    finding('dispatcher.malformed', `frame sequence ${JSON.stringify(kinds)} for ${JSON.stringify(service)}`);
    return;
  }
  s.dispatcher.accepted++;
  const stdout = Buffer.concat(out.frames.filter((f) => f.kind === Kind.STDOUT).map((f) => f.data));
  if (service.startsWith('admin.') && stdout.length) {
    const v = checkReply(stdout, kinds.endsWith('X'));
    if (v.malformed) finding('dispatcher.malformed', `${service}: qubesd reply through qrexec: ${v.malformed}`);
    const leak = leakIn(v.texts, paths);
    if (leak) finding('dispatcher.leaks', `${service}: ${leak}`);
  }
}
