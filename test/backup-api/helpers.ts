// Shared set-up of the admin.backup.* tests: a real bin/qubesd on a fresh
// store with a few qubes, data in one volume, profiles and service dirs.
import type { Test } from 'tap';
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { call, cleanup, startDaemon, type Daemon } from '../helpers/qubesd.js';

export const FIREWALL = '<firewall version="2"><rules/></firewall>\n';

export interface Env {
  d: Daemon;
  profiles: string;
  out: string;
  guests: string;
  dom0rpc: string;
  data: Buffer;
}

/** A daemon with a template, `work` (tagged, with data, notes and a
 * firewall), `other`, and the directories backups use. */
export async function setup(t: Test): Promise<Env> {
  const first = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  const s = first.socket;
  for (const [m, dest, arg, payload] of [
    ['admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black'],
    ['admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=red'],
    ['admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=other label=green'],
    ['admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=vault label=black'],
    ['admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=backupvm label=black'],
    ['admin.vm.tag.Set', 'work', 'important', ''],
    ['admin.vm.notes.Set', 'work', '', 'my notes\n'],
  ] as const) {
    const r = await call(s, m, dest, arg, payload);
    t.ok(r.ok, `${m} ${dest} ${arg}`);
  }
  await first.stop();
  // Data in the middle and at the very end of a 2 GiB sparse image.
  const data = randomBytes(3 << 20);
  const img = join(first.base, 'appvms', 'work', 'private.img');
  const fd = openSync(img, 'r+');
  writeSync(fd, data, 0, data.length, 64 << 20);
  writeSync(fd, Buffer.from('end'), 0, 3, 2 ** 31 - 3);
  closeSync(fd);
  writeFileSync(join(first.base, 'appvms', 'work', 'firewall.xml'), FIREWALL);
  const profiles = join(first.dir, 'profiles'),
    out = join(first.dir, 'out'),
    guests = join(first.dir, 'guests'),
    dom0rpc = join(first.dir, 'dom0-rpc');
  for (const p of [profiles, out, guests, dom0rpc, join(first.dir, 'policy.d'), join(first.dir, 'runtime-policy.d')]) mkdirSync(p);
  const d = await startDaemon({
    dir: first.dir,
    args: [
      '--log',
      'none',
      '--backup-profile-dir',
      profiles,
      '--services-dir',
      dom0rpc,
      '--guest-services-dir',
      guests,
      '--runtime-policy-dir',
      join(first.dir, 'runtime-policy.d'),
    ],
  });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  return { d, profiles, out, guests, dom0rpc, data };
}

export function profile(env: Env, name: string, text: string): void {
  writeFileSync(join(env.profiles, `${name}.conf`), text);
}

export function script(path: string, body: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
}

export const dom0Dest = (env: Env, extra = '', include = '[$tag:important]'): string =>
  `include: ${include}\ndestination_vm: dom0\ndestination_path: ${env.out}\n${extra}`;

export function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

export function archives(dir: string): string[] {
  return readdirSync(dir).map((f) => join(dir, f));
}

/** Enough incompressible data in work's image for an xz backup to take a
 * few seconds, so that it can be interrupted. */
export function makeSlow(env: Env): void {
  const img = join(env.d.base, 'appvms', 'work', 'private.img');
  const fd = openSync(img, 'r+');
  for (let i = 0; i < 8; i++) writeSync(fd, randomBytes(8 << 20), 0, 8 << 20, (200 << 20) + i * (8 << 20));
  closeSync(fd);
}
