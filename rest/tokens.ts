// Authentication tokens. A token is 32 random bytes (base64url), shown once
// when created; the file keeps only its SHA-256 hash, with an id (which the
// logs carry instead of the token), the identity it acts as (dom0 or a qube
// name), creation and expiry times and a description. The file is mode 0600
// and replaced atomically; the gateway rereads it when it changes, so
// `qubes-rest token create|revoke` takes effect without a restart.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
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

export class TokenStore {
  /** the file's records, and their hashes as bytes (verify compares them on every request) */
  private cache: { key: string; tokens: TokenRecord[]; hashes: Buffer[] } | null = null;

  constructor(readonly path: string) {}

  private read(): TokenRecord[] {
    return this.load().tokens;
  }

  private load(): { tokens: TokenRecord[]; hashes: Buffer[] } {
    let key: string;
    try {
      const st = statSync(this.path);
      key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return { tokens: [], hashes: [] };
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
    this.cache = { key, tokens, hashes: tokens.map((t) => Buffer.from(t.hash, 'hex')) };
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

  /** The valid record a presented token matches, or null. Every record is compared, in constant time. */
  verify(token: string, now = Date.now()): TokenRecord | null {
    const presented = hashToken(token);
    let match: TokenRecord | null = null;
    const { tokens, hashes } = this.load();
    for (let i = 0; i < tokens.length; i++) {
      const stored = hashes[i]!;
      if (stored.length === presented.length && timingSafeEqual(stored, presented)) match = tokens[i]!;
    }
    if (!match || match.revoked || (match.expires !== undefined && match.expires <= now)) return null;
    return match;
  }
}
