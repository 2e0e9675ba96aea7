// Authentication tokens. A token is 32 random bytes (base64url), shown once
// when created; the file keeps only its SHA-256 hash, with an id (which the
// logs carry instead of the token), the identity it acts as (dom0 or a qube
// name), creation and expiry times and a description. The file is mode 0600
// and replaced atomically; the gateway rereads it when it changes, so
// `qubes-rest token create|revoke` takes effect without a restart.
//
// The gateway checks a token on every request, and with one client polling
// a collection that check was a visible part of each request's time (about
// 30 us in place, where a hot loop says 5: a stat() of the file and a
// SHA-256 whose OpenSSL set-up runs cold between requests). So the gateway
// watches the file's directory instead of a stat() per request
// (watchForChanges), and a token that has matched a record is recognised
// again by a map lookup until the file changes; an unknown token is still
// hashed and compared, in constant time, with every record.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { isValidQubeName } from '../lib/qube-names.js';
import { atomicWriteFileSync } from '../lib/atomic-write.js';

export interface TokenRecord {
  id: string;
  /** sha256 of the token, hex */
  hash: string;
  identity: string;
  created: number;
  /** ms since the epoch; absent: never */
  expires?: number;
  description?: string;
  /** when it was revoked (kept so that `token list` shows it) */
  revoked?: number;
}

interface TokenFile {
  version: 1;
  tokens: TokenRecord[];
}

export const hashToken = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** "30d", "12h", "90m", "3600s" or a plain number of seconds, as milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)\s*([smhdw]?)$/.exec(text.trim());
  if (!m) throw new Error(`bad duration ${JSON.stringify(text)} (e.g. 30d, 12h, 90m, 3600s)`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd' | 'w'];
  const ms = Number(m[1]) * unit * 1000;
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new Error(`bad duration ${JSON.stringify(text)}`);
  return ms;
}

export function isValidIdentity(name: string): boolean {
  return name === 'dom0' || isValidQubeName(name);
}

/** The file as last read: its records, their hashes as bytes, and the tokens seen to match them. */
interface Loaded {
  key: string;
  tokens: TokenRecord[];
  hashes: Buffer[];
  /** presented token -> index of the record it matched; never more entries than records */
  known: Map<string, number>;
}

const NO_FILE = (): Loaded => ({ key: '', tokens: [], hashes: [], known: new Map() });

export class TokenStore {
  private cache: Loaded | null = null;
  /** an inotify watch on the file's directory; null: stat() the file on every read */
  private watcher: FSWatcher | null = null;
  /** whether the directory changed since the file was last looked at (with a watcher) */
  private changed = true;

  constructor(readonly path: string) {}

  /**
   * Learns of changes to the file from its directory, where every writer
   * (token create and revoke, an editor) renames in or modifies it, instead
   * of a stat() on every verify. The kernel reports the change before any
   * request sent after it is read, and the watch's event is taken first in
   * the event loop, so a revoked token is refused from the next request on.
   * Without a watch (it could not be set up, or failed) every verify stats.
   */
  watchForChanges(): void {
    if (this.watcher) return;
    const dir = dirname(this.path);
    try {
      const { ino } = statSync(dir);
      this.watcher = watch(dir, { persistent: false }, (event) => {
        this.changed = true;
        // the directory itself removed or replaced: the watch sees no more
        if (event === 'rename' && statSync(dir, { throwIfNoEntry: false })?.ino !== ino) this.unwatch();
      });
      this.watcher.on('error', () => this.unwatch());
    } catch {
      this.watcher = null;
    }
    this.changed = true;
  }

  unwatch(): void {
    this.watcher?.close();
    this.watcher = null;
  }

  private read(): TokenRecord[] {
    return this.load().tokens;
  }

  private load(): Loaded {
    if (this.cache && this.watcher && !this.changed) return this.cache;
    this.changed = false;
    let key: string;
    try {
      const st = statSync(this.path);
      key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      this.cache = NO_FILE();
      return this.cache;
    }
    if (this.cache?.key === key) return this.cache;
    let tokens: TokenRecord[];
    try {
      const parsed = JSON.parse(readFileSync(this.path, 'utf8')) as TokenFile;
      tokens = Array.isArray(parsed.tokens) ? parsed.tokens.filter((t) => t && typeof t.hash === 'string' && typeof t.identity === 'string') : [];
    } catch {
      // an unreadable file (edited by hand?) admits nobody, rather than failing every request
      tokens = [];
    }
    this.cache = { key, tokens, hashes: tokens.map((t) => Buffer.from(t.hash, 'hex')), known: new Map() };
    return this.cache;
  }

  private write(tokens: TokenRecord[]): void {
    atomicWriteFileSync(this.path, JSON.stringify({ version: 1, tokens } satisfies TokenFile, null, 2) + '\n', { mode: 0o600, dirMode: 0o700 });
    this.cache = null;
  }

  list(): TokenRecord[] {
    return [...this.read()];
  }

  /** Creates a token; the only time the token itself exists outside the caller's hands. */
  create(identity: string, opts: { expiresInMs?: number; description?: string; now?: number } = {}): { token: string; record: TokenRecord } {
    if (!isValidIdentity(identity)) throw new Error(`bad identity ${JSON.stringify(identity)} (dom0 or a qube name)`);
    const now = opts.now ?? Date.now();
    const token = randomBytes(32).toString('base64url');
    const record: TokenRecord = {
      id: randomBytes(6).toString('hex'),
      hash: hashToken(token).toString('hex'),
      identity,
      created: now,
      ...(opts.expiresInMs ? { expires: now + opts.expiresInMs } : {}),
      ...(opts.description ? { description: opts.description } : {}),
    };
    this.write([...this.read(), record]);
    return { token, record };
  }

  /** Marks a token revoked; false when there is no such id. */
  revoke(id: string, now = Date.now()): boolean {
    const tokens = this.read();
    const found = tokens.find((t) => t.id === id);
    if (!found) return false;
    if (!found.revoked) this.write(tokens.map((t) => (t.id === id ? { ...t, revoked: now } : t)));
    return true;
  }

  /**
   * The valid record a presented token matches, or null. A token not seen
   * to match since the file was read is hashed and compared with every
   * record, in constant time.
   */
  verify(token: string, now = Date.now()): TokenRecord | null {
    const { tokens, hashes, known } = this.load();
    let index = known.get(token);
    if (index === undefined) {
      const presented = hashToken(token);
      for (let i = 0; i < tokens.length; i++) {
        const stored = hashes[i]!;
        if (stored.length === presented.length && timingSafeEqual(stored, presented)) index = i;
      }
      if (index === undefined) return null;
      known.set(token, index);
    }
    const match = tokens[index]!;
    if (match.revoked || (match.expires !== undefined && match.expires <= now)) return null;
    return match;
  }
}
