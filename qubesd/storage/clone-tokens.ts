// admin.vm.volume.CloneFrom/CloneTo: CloneFrom hands out a one-time token
// naming a volume; CloneTo spends it. The token says which volume it named
// (qube, volume, pool and vid at that time), so that CloneTo can refuse a
// volume that has been replaced since.
import { randomInt } from 'node:crypto';
import { QubesVolumeCopyTokenNotFoundError } from './errors.js';

export interface CloneSource {
  vm: string;
  volume: string;
  pool: string;
  vid: string;
}

/** Qubes' token alphabet (qubes/api/admin.py: 32 characters of letters and digits) */
const TOKEN_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

export class CloneTokens {
  private readonly tokens = new Map<string, CloneSource>();

  /** A new token for this source. */
  issue(src: CloneSource): string {
    let token = '';
    for (let i = 0; i < 32; i++) token += TOKEN_CHARS[randomInt(TOKEN_CHARS.length)];
    this.tokens.set(token, src);
    return token;
  }

  /** The source the token names; the token is spent whatever happens next. */
  take(token: string): CloneSource {
    const src = this.tokens.get(token);
    if (!src) throw QubesVolumeCopyTokenNotFoundError();
    this.tokens.delete(token);
    return src;
  }

  /** The qube is gone: its tokens name nothing any more. */
  forgetQube(vm: string): void {
    for (const [token, src] of this.tokens) if (src.vm === vm) this.tokens.delete(token);
  }
}
