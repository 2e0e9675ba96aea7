// Records real libvirt RPC traffic into test/hypervisor/fixtures/, once, for
// the encoding tests. Not a test itself; run it with a libvirtd up:
//   .ci/libvirt.sh && node dist/test/hypervisor/tools/capture-fixtures.js [SOCKET]
// Two sessions go through a recording proxy in front of libvirtd:
//   virsh-session.json  - virsh (libvirt's own C client) against the test
//                         driver: its calls pin our argument encoding, the
//                         daemon's replies pin our decoding;
//   client-events.json  - our client: lifecycle event messages and keepalive
//                         PING/PONG as libvirtd sends them.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LibvirtClient } from '../../../qubesd/hypervisor/libvirt/client.js';
import { PacketSplitter } from '../../../qubesd/hypervisor/libvirt/packet.js';

interface Recorded {
  dir: 'c2s' | 's2c';
  hex: string;
}

function recordingProxy(listenPath: string, target: string, out: Recorded[]): Promise<Server> {
  const server = createServer((client) => {
    const upstream = createConnection(target);
    const c2s = new PacketSplitter();
    const s2c = new PacketSplitter();
    client.on('data', (d: Buffer) => {
      for (const p of c2s.push(d)) out.push({ dir: 'c2s', hex: p.toString('hex') });
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      for (const p of s2c.push(d)) out.push({ dir: 's2c', hex: p.toString('hex') });
      client.write(d);
    });
    client.on('close', () => upstream.end());
    upstream.on('close', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  return new Promise((resolve) => server.listen(listenPath, () => resolve(server)));
}

async function main(): Promise<void> {
  const target = process.argv[2] ?? process.env.QUBES_TEST_LIBVIRT_SOCK ?? '/tmp/qubes-libvirt/libvirt-sock';
  const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../../../test/hypervisor/fixtures');
  const dir = mkdtempSync(join(tmpdir(), 'capture-'));
  try {
    const virsh: Recorded[] = [];
    const p1 = join(dir, 'p1.sock');
    const s1 = await recordingProxy(p1, target, virsh);
    const cmds = 'domstate test; dominfo test; domstate no-such-domain; suspend test; resume test; list --all; domstats test; destroy test; start test';
    // virsh runs as a child so that this process keeps serving the proxy.
    const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      const c = spawn('virsh', ['-c', `test+unix:///default?socket=${p1}`, cmds], { stdio: ['ignore', 'inherit', 'pipe'] });
      let stderr = '';
      c.stderr.on('data', (d: Buffer) => {
        stderr += d;
      });
      c.on('exit', (status) => resolve({ status, stderr }));
    });
    s1.close();
    process.stderr.write(`virsh exited ${r.status}: ${r.stderr}\n`);
    writeFileSync(
      join(fixtures, 'virsh-session.json'),
      JSON.stringify(
        {
          note: `virsh -c test+unix:///default "${cmds}" against libvirtd ${spawnSync('libvirtd', ['--version']).stdout.toString().trim()}`,
          packets: virsh,
        },
        null,
        1,
      ) + '\n',
    );

    const ours: Recorded[] = [];
    const p2 = join(dir, 'p2.sock');
    const s2 = await recordingProxy(p2, target, ours);
    const c = new LibvirtClient({ socketPath: p2, uri: 'test:///default', keepaliveIntervalMs: 300 });
    const events: unknown[] = [];
    c.on('lifecycle', (m) => events.push(m));
    await c.connect();
    const [dom] = await c.listAllDomains();
    await c.suspend(dom!);
    await c.resume(dom!);
    await new Promise((res) => setTimeout(res, 800)); // quiet: we ping, libvirtd pongs
    await c.close();
    s2.close();
    writeFileSync(
      join(fixtures, 'client-events.json'),
      JSON.stringify(
        {
          note: 'our client against the test driver: connect, list, suspend + resume "test", 800 ms of silence (keepalive), close',
          packets: ours,
        },
        null,
        1,
      ) + '\n',
    );
    process.stderr.write(`recorded ${virsh.length} + ${ours.length} packets, ${events.length} events\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
