// The policy admin API (policy.List/Get/Replace/Remove, their policy.include.*
// variants, policy.GetFiles), with Qubes' messages and rules: every change
// is checked by loading the whole resulting policy first; tokens (sha256 of
// the current content, "new", "any") refuse stale writes; changes are
// serialised by a lock on the policy directory and written atomically.
// Unlike Qubes, a policy file name the loader would refuse is refused here,
// and a failed write never leaves a file the loader would read.

import { createHash } from 'node:crypto';
import { closeSync, existsSync, fchmodSync, fchownSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeSync, constants as fsc } from 'node:fs';
import { AccessDenied } from './errors.js';
import { isFile, resolvePath } from './fsutil.js';
import { decodePolicyText, DEFAULT_LEGACY_DIR, loadPolicy } from './loader.js';
import type { PolicyServiceName } from '../lib/policy-services.js';
import { pyRepr, pyTupleRepr } from '../lib/py-repr.js';
import { atomicWriteFileSync, fsyncDirSync } from '../lib/atomic-write.js';
import { invalidChars } from './rule.js';

/** Longest file name the file systems we run on accept (bytes). */
const NAME_MAX = 255;

export class PolicyAdminException extends Error {
  override get name(): string {
    return this.constructor.name;
  }
}
/** The file is not in the state the caller's token says. */
export class PolicyAdminTokenException extends PolicyAdminException {}
export class PolicyAdminFileNotFoundException extends PolicyAdminException {}
/** A request a correct client would not send. */
export class PolicyAdminProtocolException extends PolicyAdminException {}
/** The change would leave a policy that does not load. */
export class PolicyAdminSyntaxException extends PolicyAdminProtocolException {}
export class PolicyAdminInvalidFileNameException extends PolicyAdminProtocolException {}
export class PolicyAdminInvalidFilePathException extends PolicyAdminProtocolException {}

/** The token of a file's content: "sha256:<hex>". */
export function computeToken(data: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

interface Method {
  noArg: boolean;
  noPayload: boolean;
  run(admin: PolicyAdmin, arg: string, payload: Buffer): Buffer | null;
}

/** One implementation for each of the services in lib/policy-services.ts, no more. */
const METHODS: Record<PolicyServiceName, Method> = {
  'policy.List': { noArg: true, noPayload: true, run: (a) => a.list(false) },
  'policy.include.List': { noArg: true, noPayload: true, run: (a) => a.list(true) },
  'policy.Get': { noArg: false, noPayload: true, run: (a, arg) => a.get(false, arg) },
  'policy.include.Get': { noArg: false, noPayload: true, run: (a, arg) => a.get(true, arg) },
  'policy.Replace': { noArg: false, noPayload: false, run: (a, arg, p) => a.replace(false, arg, p) },
  'policy.include.Replace': { noArg: false, noPayload: false, run: (a, arg, p) => a.replace(true, arg, p) },
  'policy.Remove': { noArg: false, noPayload: false, run: (a, arg, p) => a.remove(false, arg, p) },
  'policy.include.Remove': { noArg: false, noPayload: false, run: (a, arg, p) => a.remove(true, arg, p) },
  'policy.GetFiles': { noArg: false, noPayload: true, run: (a, arg) => a.getFiles(arg) },
};

const RPCNAME = /^[A-Za-z0-9+\-._]*$/;
// Qubes accepts any word character (\w, Unicode) and '-'
const QUBES_NAME = /^[\p{L}\p{N}_-]+$/u;
// what the loader accepts in a policy.d file name (besides '.')
const LOADABLE_NAME = /^[a-z0-9_-]+$/;
const LOCK_NAME = '.policy-admin.lock';
const LOCK_WAIT_MS = 30000;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface PolicyAdminOptions {
  /** read by `!compat-4.0` during validation (default /etc/qubes-rpc/policy) */
  legacyDir?: string;
}

export class PolicyAdmin {
  readonly policyDir: string;
  readonly includeDir: string;

  constructor(
    policyDir: string,
    private readonly opts: PolicyAdminOptions = {},
  ) {
    this.policyDir = resolvePath(policyDir);
    this.includeDir = this.policyDir + '/include';
  }

  /**
   * Handles one call. Returns the reply (null: empty), throws a
   * PolicyAdminException for the caller's mistakes.
   */
  handleRequest(service: string, arg: string, payload: Buffer): Buffer | null {
    if (!RPCNAME.test(arg)) {
      throw new PolicyAdminProtocolException(`Invalid argument: "${arg}"\nValid characters are letters, numbers, dot, plus, hyphen and underline`);
    }
    const method = Object.prototype.hasOwnProperty.call(METHODS, service) ? METHODS[service as PolicyServiceName] : undefined;
    if (!method) throw new PolicyAdminProtocolException(`unrecognized method: ${service}`);
    if (method.noArg && arg !== '') throw new PolicyAdminProtocolException('Unexpected argument');
    if (method.noPayload && payload.length !== 0) throw new PolicyAdminProtocolException('Unexpected payload');
    const release = this.lock();
    try {
      return method.run(this, arg, payload);
    } finally {
      release();
    }
  }

  /** An exclusive lock on the policy directory, across processes. */
  private lock(): () => void {
    const path = this.policyDir + '/' + LOCK_NAME;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      let fd: number;
      try {
        fd = openSync(path, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o600);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM' || code === 'ENOENT') {
          // nothing can be written here, so there is nothing to serialise
          return () => undefined;
        }
        if (code !== 'EEXIST') throw err;
        let holder = NaN;
        try {
          holder = Number(readFileSync(path, 'utf8'));
        } catch {
          // released meanwhile
        }
        if (Number.isInteger(holder) && holder > 0 && !processAlive(holder)) {
          try {
            unlinkSync(path);
          } catch {
            // another waiter removed it first
          }
          continue;
        }
        if (Date.now() > deadline) throw new Error(`policy directory lock ${path} is held by process ${holder}`);
        sleepSync(5);
        continue;
      }
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
      };
    }
  }

  list(include: boolean): Buffer {
    const dir = include ? this.includeDir : this.policyDir;
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && include) entries = [];
      else throw err;
    }
    const names: string[] = [];
    for (const e of entries) {
      if (!isFile(dir + '/' + e)) continue;
      if (!include) {
        if (e.endsWith('.policy')) names.push(e.slice(0, -'.policy'.length));
      } else names.push(e);
    }
    names.sort();
    return Buffer.from(names.map((n) => n + '\n').join(''), 'utf8');
  }

  /** Path of a policy or include file; refuses names that could reach elsewhere. */
  private pathOf(include: boolean, arg: string): string {
    if (!QUBES_NAME.test(arg)) {
      throw new PolicyAdminInvalidFileNameException(
        `Invalid policy file name: ${arg}\nNames must contain only alphanumeric characters, underscore and hyphen.`,
      );
    }
    const file = arg + (include ? '' : '.policy');
    if (Buffer.byteLength(file) > NAME_MAX) {
      // Qubes lets the file system refuse it (an OSError); a clear refusal instead
      throw new PolicyAdminInvalidFileNameException(
        `Invalid policy file name: ${arg}\nNames must be at most ${NAME_MAX - (include ? 0 : '.policy'.length)} characters long.`,
      );
    }
    const dir = include ? this.includeDir : this.policyDir;
    const path = resolvePath(dir + '/' + file);
    if (path.slice(0, path.lastIndexOf('/')) !== dir) {
      throw new PolicyAdminInvalidFilePathException(`Expecting a path inside ${dir}`);
    }
    return path;
  }

  get(include: boolean, arg: string): Buffer {
    const path = this.pathOf(include, arg);
    if (!isFile(path)) throw new PolicyAdminFileNotFoundException(`Not found: ${path}`);
    const data = readFileSync(path);
    return Buffer.concat([Buffer.from(computeToken(data) + '\n'), data]);
  }

  replace(include: boolean, arg: string, payload: Buffer): null {
    const path = this.pathOf(include, arg);
    if (!include && !LOADABLE_NAME.test(arg)) {
      throw new PolicyAdminInvalidFileNameException(
        `Invalid policy file name: ${arg}\nPolicy file names must contain only lower-case letters, digits, underscore and hyphen, or the policy would not load.`,
      );
    }
    const nl = payload.indexOf(0x0a);
    if (nl < 0) throw new PolicyAdminProtocolException('Payload needs to include first line with token');
    this.checkToken(payload.subarray(0, nl), path);
    const data = payload.subarray(nl + 1);
    let text: string;
    try {
      text = decodePolicyText(data, path);
    } catch (err) {
      throw new PolicyAdminSyntaxException(`Policy change validation failed: ${(err as Error).message}`);
    }
    this.validate(path, text);
    writeAtomically(path, data);
    return null;
  }

  remove(include: boolean, arg: string, payload: Buffer): null {
    const path = this.pathOf(include, arg);
    this.checkToken(payload, path);
    if (!isFile(path)) throw new PolicyAdminFileNotFoundException(`Not found: ${path}`);
    this.validate(path, null);
    unlinkSync(path);
    try {
      fsyncDirSync(path.slice(0, path.lastIndexOf('/')));
    } catch {
      // best effort: the file is gone; some file systems refuse fsync on directories
    }
    return null;
  }

  getFiles(arg: string): Buffer {
    if (!arg) throw new PolicyAdminProtocolException('Service cannot be empty.');
    const bad = invalidChars(arg, true);
    if (bad.length) throw new PolicyAdminProtocolException(`Service ${pyRepr(arg)} contains invalid characters: ${pyTupleRepr(bad)}`);
    let rules;
    try {
      rules = loadPolicy({ policyDir: this.policyDir, legacyDir: this.opts.legacyDir ?? DEFAULT_LEGACY_DIR }).rules;
    } catch (err) {
      if (err instanceof AccessDenied) throw new PolicyAdminSyntaxException(`Policy does not load: ${err.message}`);
      throw err;
    }
    const files: string[] = [];
    for (const r of rules) {
      if (r.service !== null && r.service !== arg) continue;
      const inside = r.file.startsWith(this.policyDir + '/');
      const name = inside ? stem(r.file.slice(r.file.lastIndexOf('/') + 1)) : r.file;
      if (!files.includes(name)) files.push(name);
    }
    return Buffer.from(files.map((f) => f + '\n').join(''), 'utf8');
  }

  private checkToken(token: Buffer, path: string): void {
    const t = token.toString('latin1');
    if (t === 'any') return;
    if (t === 'new') {
      if (existsSync(path)) throw new PolicyAdminTokenException("File exists but token is 'new'");
      return;
    }
    if (!t.startsWith('sha256:')) throw new PolicyAdminProtocolException('Unrecognized token');
    if (!existsSync(path)) throw new PolicyAdminTokenException("File doesn't exist, but token isn't 'new'");
    if (computeToken(readFileSync(path)) !== t) throw new PolicyAdminTokenException('Token mismatch');
  }

  /** Loads the whole policy as it would be after the change. */
  private validate(path: string, content: string | null): void {
    try {
      loadPolicy({
        policyDir: this.policyDir,
        legacyDir: this.opts.legacyDir ?? DEFAULT_LEGACY_DIR,
        overrides: new Map([[path, content]]),
      });
    } catch (err) {
      if (err instanceof AccessDenied) throw new PolicyAdminSyntaxException(`Policy change validation failed: ${err.message}`);
      throw err;
    }
  }
}

/** pathlib's stem: the name without its last suffix. */
function stem(name: string): string {
  const i = name.lastIndexOf('.');
  return i > 0 && i < name.length - 1 ? name.slice(0, i) : name;
}

/**
 * Writes through lib/atomic-write.ts (a dot file ending in .tmp, which the
 * loader ignores, renamed over the target), with the bits and group that
 * Qubes gives policy files: 0664, group qubes when run as root.
 */
export function writeAtomically(path: string, data: Uint8Array): void {
  const dir = path.slice(0, path.lastIndexOf('/'));
  atomicWriteFileSync(path, data, {
    mode: 0o664,
    prepare: (fd) => {
      fchmodSync(fd, 0o664);
      try {
        if (process.getuid?.() === 0) fchownSync(fd, 0, groupId('qubes') ?? statSync(dir).gid);
      } catch {
        // no 'qubes' group here: keep the owner
      }
    },
  });
}

function groupId(name: string): number | null {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f[2]) return Number(f[2]);
    }
  } catch {
    // no group database
  }
  return null;
}
