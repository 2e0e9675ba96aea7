// Every name validator, fed hostile and random names: it answers only with
// its own refusal (a typed error or false), and a name it accepts cannot
// leave the directory it is used in ('/', '..', NUL), nor pass for an option
// (leading '-') where the name can reach a command line. Where Qubes itself
// accepts a character (a label or feature named '..', a policy file or backup
// profile starting with '-'), the property follows Qubes and says so.
import t from 'tap';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname, basename } from 'node:path';
import { QubesError } from '../../qubesd/errors.js';
import { validateVmName } from '../../qubesd/model/names.js';
import { validateLabelName } from '../../qubesd/model/labels.js';
import { validateKernel } from '../../qubesd/model/properties-vm-rules.js';
import { isSafeComponent, isSafeVid, pathInPool } from '../../qubesd/storage/paths.js';
import { POOL_NAME_CHARS, allIn } from '../../qubesd/storage/api-args.js';
import { handlers as tagHandlers } from '../../qubesd/api/handlers/tag.js';
import { handlers as featureHandlers } from '../../qubesd/api/handlers/feature.js';
import { loadProfile, profileNameValid, ProfileError, ProfileNotFoundError } from '../../qubesd/backup/profile.js';
import { isValidArgument, isValidRequestedTarget, isValidServiceDescriptor, isValidTargetName } from '../../rpc-services/service-names.js';
import { isValidQubeName } from '../../lib/qube-names.js';
import { PolicyAdmin, PolicyAdminException } from '../../policy/admin.js';
import type { Call } from '../../qubesd/api/call.js';
import { fromChars, holds, nameLike } from './fc.js';

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const DIGITS = '0123456789';
const validQube = fc.tuple(fc.constantFrom(...LETTERS.split('')), fromChars(LETTERS + DIGITS + '_.-', 20)).map(([a, b]) => a + b);
const qubeish = nameLike(validQube);

/** A name that stays one entry of its directory. */
function staysInDir(name: string): boolean {
  const dir = '/srv/d';
  const p = resolve(dir, name);
  return name.length > 0 && !name.includes('/') && !name.includes('\0') && name !== '.' && name !== '..' && dirname(p) === dir && basename(p) === name;
}
const noOption = (name: string) => !name.startsWith('-');
const printableAscii = (name: string) => /^[\x21-\x7e]+$/.test(name);

/** true: accepted; false: refused with the validator's own error type; anything else escapes. */
function accepts(fn: () => unknown, refusal: (e: unknown) => boolean): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (refusal(e)) return false;
    throw e;
  }
}
const qubesError = (e: unknown) => e instanceof QubesError;
/** The wire type of the QubesError fn throws ('' when it throws nothing). */
function refusalType(fn: () => unknown): string {
  try {
    fn();
    return '';
  } catch (e) {
    return e instanceof QubesError ? e.type : `not a QubesError: ${String(e)}`;
  }
}

t.test('qube names (qubesd: validateVmName)', async (t) => {
  await holds(
    t,
    'accepted names are one plain path component, no option',
    fc.property(qubeish, (n) => {
      if (!accepts(() => validateVmName(n), qubesError)) return true;
      return staysInDir(n) && noOption(n) && printableAscii(n) && n.length <= 31;
    }),
    3000,
  );
  t.equal(
    refusalType(() => validateVmName('..')),
    'QubesValueError',
  );
  t.equal(
    refusalType(() => validateVmName('-x')),
    'QubesValueError',
  );
});

t.test('qube and target names (handler program / dispatcher)', async (t) => {
  await holds(
    t,
    'isValidQubeName / isValidTargetName',
    fc.property(qubeish, (n) => {
      if (isValidQubeName(n) && !(staysInDir(n) && noOption(n) && printableAscii(n))) return false;
      return !isValidTargetName(n) || (staysInDir(n) && noOption(n) && printableAscii(n));
    }),
    3000,
  );
  await holds(
    t,
    'isValidRequestedTarget: no path or control characters',
    fc.property(qubeish, (n) => {
      return !isValidRequestedTarget(n) || (!n.includes('/') && !n.includes('\0') && /^[\x21-\x7e]*$/.test(n));
    }),
    2000,
  );
  const service = fromChars(LETTERS + DIGITS + '._-', 20).filter((s) => s.length > 0);
  await holds(
    t,
    'isValidServiceDescriptor / isValidArgument: no path separator, NUL or control characters',
    fc.property(nameLike(service), nameLike(service), (s, a) => {
      const desc = `${s}+${a}`;
      if (isValidServiceDescriptor(desc) && !/^[\x21-\x7e]+$/.test(desc)) return false;
      if (isValidServiceDescriptor(desc) && desc.includes('/')) return false;
      return !isValidArgument(a) || !/[/\0\s]/.test(a);
    }),
    3000,
  );
});

t.test('label names (validateLabelName)', async (t) => {
  // Qubes' safe set has '-' and '.': '..' and '-x' are valid label names there
  // (labels are never paths), so only path separators and controls are refused.
  await holds(
    t,
    'accepted labels: printable ASCII, no separator',
    fc.property(nameLike(fromChars(LETTERS + DIGITS + '-_.', 12)), fc.boolean(), (n, creation) => {
      if (!accepts(() => validateLabelName(n, creation), qubesError)) return true;
      return printableAscii(n) && !n.includes('/');
    }),
    2000,
  );
});

/** A call to a handler with a stub destination that records what it was asked to store. */
function stubCall(arg: string, payload: Buffer, stored: string[]): Call {
  const dest = { name: 'work', addTag: (x: string) => stored.push(x), setFeature: (k: string) => stored.push(k), tags: new Set<string>() };
  return { arg, payload, dest, source: { klass: 'AdminVM', name: 'dom0' } } as unknown as Call;
}

t.test('tag and feature names (admin.vm.tag.Set, admin.vm.feature.Set)', async (t) => {
  const tagish = nameLike(fromChars(LETTERS + DIGITS + '_-', 16));
  await holds(
    t,
    'a stored tag is a plain word',
    fc.property(tagish, (n) => {
      const stored: string[] = [];
      if (!accepts(() => tagHandlers['admin.vm.tag.Set']!(stubCall(n, Buffer.alloc(0), stored)), qubesError)) return stored.length === 0;
      return stored.length === 1 && stored[0] === n && staysInDir(n) && printableAscii(n) && !n.includes('.');
    }),
    2000,
  );
  // Qubes' feature names allow '.' and a leading '-'; features are never paths
  const featureish = nameLike(fromChars(LETTERS + DIGITS + '_.-', 16));
  await holds(
    t,
    'a stored feature name is printable ASCII without separator',
    fc.property(featureish, fc.uint8Array({ maxLength: 8 }), (n, v) => {
      const stored: string[] = [];
      if (!accepts(() => featureHandlers['admin.vm.feature.Set']!(stubCall(n, Buffer.from(v), stored)), qubesError)) return stored.length === 0;
      return stored.length === 1 && printableAscii(n) && !n.includes('/');
    }),
    2000,
  );
  t.equal(
    refusalType(() => tagHandlers['admin.vm.tag.Set']!(stubCall('../x', Buffer.alloc(0), []))),
    'QubesInvalidTagError',
  );
});

t.test('pool names and volume ids (storage)', async (t) => {
  await holds(
    t,
    "pool names: Qubes' safe set has no separator",
    fc.property(nameLike(fromChars(POOL_NAME_CHARS, 12)), (n) => {
      return !allIn(n, POOL_NAME_CHARS) || (!n.includes('/') && !n.includes('\0') && /^[\x21-\x7e]*$/.test(n));
    }),
    2000,
  );
  await holds(
    t,
    'isSafeComponent: one plain component, no option',
    fc.property(nameLike(fromChars(LETTERS + DIGITS + '_.+-', 16)), (n) => {
      return !isSafeComponent(n) || (staysInDir(n) && noOption(n) && printableAscii(n));
    }),
    3000,
  );
  const vidish = fc.array(nameLike(fromChars(LETTERS + DIGITS + '_.-', 10)), { minLength: 1, maxLength: 4 }).map((p) => p.join('/'));
  const pool = '/var/lib/qubes/pool';
  await holds(
    t,
    'pathInPool: inside the pool directory or StoragePoolException',
    fc.property(vidish, fc.constantFrom('', '.img', '-cow.img', '/x'), (vid, suffix) => {
      let p: string;
      try {
        p = pathInPool(pool, vid, suffix);
      } catch (e) {
        return e instanceof QubesError && e.type === 'StoragePoolException' && !isSafeVid(vid);
      }
      return (
        p.startsWith(pool + '/') &&
        !p
          .slice(pool.length)
          .split('/')
          .some((c) => c === '..' || c === '.') &&
        !p.includes('\0')
      );
    }),
    3000,
  );
});

t.test('kernel names (validateKernel): only directories under vm-kernels', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'fuzz-kernel-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  for (const d of ['vm-kernels/6.1', 'outside', '']) {
    mkdirSync(join(base, d), { recursive: true });
    writeFileSync(join(base, d, 'vmlinuz'), '');
  }
  const holder = { app: { baseDir: base } };
  const kernelish = fc.oneof(nameLike(fc.constantFrom('6.1', 'x')), fc.constantFrom('..', '../outside', '../..' + base, '6.1/../../outside', '.'));
  await holds(
    t,
    'an accepted kernel resolves to a directory directly under vm-kernels',
    fc.property(kernelish, (k) => {
      if (!accepts(() => validateKernel(holder, k), qubesError)) return true;
      return k === '' || dirname(resolve(base, 'vm-kernels', k)) === join(base, 'vm-kernels');
    }),
    500,
  );
});

t.test('backup profile names (profileNameValid, loadProfile)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fuzz-profile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'good.conf'), 'destination_vm: dom0\ndestination_path: /backups\n');
  mkdirSync(join(dir, 'adir.conf'));
  const profileish = nameLike(fromChars(LETTERS + DIGITS + '_.-', 16));
  // Qubes refuses only '/' in a profile name; a leading '-' or '.' is allowed
  // (the name never reaches a command line, and '..' is the file '...conf')
  await holds(
    t,
    'a valid profile name is one plain file name',
    fc.property(profileish, (n) => {
      return !profileNameValid(n) || (staysInDir(n + '.conf') && printableAscii(n));
    }),
    3000,
  );
  await holds(
    t,
    "loadProfile: only its own errors, never Node's text or the directory",
    fc.asyncProperty(fc.oneof(profileish, fc.constantFrom('good', 'adir', 'a'.repeat(251), 'a'.repeat(300))), async (n) => {
      try {
        await loadProfile(n, dir);
        return true;
      } catch (e) {
        if (!(e instanceof ProfileNotFoundError || e instanceof ProfileError)) return false;
        // the name itself may be echoed (as Qubes does) and may look like a code ("ECCF")
        const own = e.message.split(n).join('');
        return !/\bE[A-Z]{3,}\b/.test(own) && !e.message.includes(dir);
      }
    }),
    500,
  );
});

t.test('policy file names (policy admin API)', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'fuzz-policyname-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const pd = join(root, 'policy.d');
  mkdirSync(join(pd, 'include'), { recursive: true });
  writeFileSync(join(pd, '30-user.policy'), 'admin.vm.List * dom0 @adminvm allow\n');
  writeFileSync(join(root, 'secret.policy'), 'not yours\n');
  writeFileSync(join(pd, 'include', 'inc'), 'admin.vm.List * dom0 @adminvm allow\n');
  const admin = new PolicyAdmin(pd, { legacyDir: join(root, 'legacy') });
  const policyish = nameLike(fromChars(LETTERS.toLowerCase() + DIGITS + '_-', 12));
  const services = fc.constantFrom('policy.Get', 'policy.include.Get', 'policy.Replace', 'policy.include.Replace', 'policy.Remove', 'policy.include.Remove');
  const before = readdirSync(root).sort().join(',');
  const call = (svc: string, n: string): unknown => {
    const payload = svc.endsWith('Replace')
      ? Buffer.from('any\nadmin.vm.List * dom0 @adminvm allow\n')
      : svc.endsWith('Remove')
        ? Buffer.from('any')
        : Buffer.alloc(0);
    try {
      const out = admin.handleRequest(svc, n, payload);
      if (out && out.includes('not yours')) return 'read a file outside the policy directory';
    } catch (e) {
      if (!(e instanceof PolicyAdminException)) return e;
    }
    if (readdirSync(root).sort().join(',') !== before) return 'wrote outside the policy directory';
    return null;
  };
  await holds(
    t,
    'files read or written are inside the policy directory; refusals are PolicyAdminException',
    fc.property(
      services,
      policyish.filter((n) => n.length <= 64),
      (svc, n) => call(svc, n) === null,
    ),
    1500,
  );
  // Long names once let Node's ENAMETOOLONG escape PolicyAdmin (the service
  // program turned it into "Internal error", exit 2).
  await holds(
    t,
    'same for names of any length',
    fc.property(services, fc.oneof(policyish, fc.constantFrom('x'.repeat(248), 'x'.repeat(250), 'x'.repeat(300))), (svc, n) => call(svc, n) === null),
    300,
  );
});
