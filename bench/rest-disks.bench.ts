// Disk transfer rates through the REST gateway against qubesd's own import
// on the same disk (the handler program's path: ImportBegin, the storage
// layer's copy from a file, ImportEnd): PUT /vdis/{id}.raw, GET .raw and
// .vhd, and qubesd's admin.vm.volume.Export read directly. The volume is
// full of data (no holes), so every byte is read, sent and written.
// `vs_qubesd_import` is the rate over qubesd's import rate (target >= 0.8);
// exports also carry `vs_qubesd_export`, the rate over qubesd's own
// admin.vm.volume.Export read straight from its socket (the gateway's export
// is that call, relayed).
import { createReadStream, openSync, writeSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { report, startRestBenchStack } from './common.js';
import { call, callStream } from '../lib/qubesd-client.js';
import { copyStreamInto } from '../lib/sparse-copy.js';

const quick = process.env.BENCH_QUICK === '1';
const SIZE = (quick ? 128 : 512) << 20;
const ROUNDS = quick ? 1 : 4;

/**
 * One transfer with curl, the client Xen Orchestra's page shows for exports
 * and imports: a C client, so that the rate is the gateway's and not a Node
 * client's sharing the two cores (Node's http client spent 350-900 ms of CPU
 * per 512 MiB download, about as much as the gateway).
 */
function request(url: string, method: 'GET' | 'PUT', token: string, body?: string): Promise<void> {
  const args = ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Authorization: Bearer ${token}`];
  if (method === 'PUT') args.push('-T', body!, '-H', 'Content-Type: application/octet-stream');
  return new Promise((resolve, reject) => {
    execFile('curl', [...args, url], (e, out) => (e || out !== '200' ? reject(new Error(`${method} ${url}: ${e?.message ?? out}`)) : resolve()));
  });
}

const mibs = (bytesPerS: number): number => Math.round((bytesPerS / (1 << 20)) * 10) / 10;

/**
 * The best rate of each transfer over ROUNDS rounds, the transfers taken in
 * turn within each round: on this kind of VM, fresh page-cache pages cost far
 * more right after memory went back to the host, so transfers measured in
 * separate blocks met different conditions (the first 512 MiB write of a
 * block took 2-4 times the CPU of the next ones).
 */
async function bestInTurn(transfers: Record<string, () => Promise<unknown>>): Promise<Record<string, number>> {
  const top: Record<string, number> = {};
  for (let i = 0; i < ROUNDS; i++) {
    for (const [name, fn] of Object.entries(transfers)) {
      const t0 = performance.now();
      await fn();
      const rate = SIZE / ((performance.now() - t0) / 1000);
      process.stderr.write(`rest-disks: round ${i + 1} ${name} ${mibs(rate)} MiB/s\n`);
      top[name] = Math.max(top[name] ?? 0, rate);
    }
  }
  return top;
}

async function main(): Promise<void> {
  const gw = await startRestBenchStack('rest-disks-bench');
  const { prefix, stack, token } = gw;
  try {
    const { socket, internalSocket } = stack.config.qubesd;
    await call(socket, { method: 'admin.vm.Create.StandaloneVM', dest: 'dom0', payload: 'name=disk label=red' });
    // a source file full of data
    const src = join(prefix, 'src.raw');
    const fd = openSync(src, 'w');
    const block = randomBytes(1 << 20);
    for (let i = 0; i < SIZE >> 20; i++) writeSync(fd, block);
    closeSync(fd);

    const qubesdImport = async (): Promise<void> => {
      const begin = await call(internalSocket, { method: 'internal.vm.volume.ImportBegin', dest: 'disk', arg: 'private', payload: String(SIZE) });
      const r = await copyStreamInto(createReadStream(src, { highWaterMark: 1 << 20 }), begin.slice(begin.indexOf(' ') + 1), SIZE);
      await call(internalSocket, { method: 'internal.vm.volume.ImportEnd', dest: 'disk', arg: 'private', payload: r.ok ? 'ok' : `fail\n${r.error}` });
    };
    await qubesdImport(); // also gives the volume its size
    const vdi = `${gw.url}/vdis/disk:private`;
    const rates = await bestInTurn({
      import: qubesdImport,
      put: () => request(`${vdi}.raw`, 'PUT', token, src),
      export: async () => {
        const s = await callStream(socket, { method: 'admin.vm.volume.Export', dest: 'disk', arg: 'private' });
        for await (const chunk of s.content) void chunk;
      },
      raw: () => request(`${vdi}.raw`, 'GET', token),
      vhd: () => request(`${vdi}.vhd`, 'GET', token),
    });
    const base = rates.import!;
    const exportRate = rates.export!;
    const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;
    const row = (name: string, rate: number, withExport = false): void =>
      report({
        bench: 'rest-disks',
        name,
        bytes: SIZE,
        value: mibs(rate),
        unit: 'MiB/s',
        vs_qubesd_import: ratio(rate, base),
        ...(withExport ? { vs_qubesd_export: ratio(rate, exportRate) } : {}),
      });
    row('qubesd import (ImportBegin, copy, ImportEnd)', base);
    row('PUT /vdis/{id}.raw', rates.put!);
    row('GET /vdis/{id}.raw', rates.raw!, true);
    row('GET /vdis/{id}.vhd', rates.vhd!, true);
    row('admin.vm.volume.Export (qubesd socket, direct)', exportRate, true);
  } finally {
    await gw.stop();
  }
}

await main();
