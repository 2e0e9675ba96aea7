// Keeps a policy current while its files change: file-system notifications
// (plus a slow poll as a safety net) mark it stale, the reload waits until the
// files have stopped changing, and a policy that fails to load never replaces
// the last good one.

import { statSync, watch, type FSWatcher } from 'node:fs';
import { AccessDenied } from './errors.js';
import { PolicyEngine, type EngineOptions } from './policy-engine.js';

export interface WatcherOptions extends EngineOptions {
  /** quiet time before a reload (ms, default 100) */
  settleMs?: number;
  /** poll interval of the safety net (ms, default 2000; 0 disables it) */
  pollMs?: number;
  onReload?: (engine: PolicyEngine) => void;
  onError?: (err: AccessDenied) => void;
}

function signature(paths: readonly string[]): string {
  const parts: string[] = [];
  for (const p of paths) {
    try {
      const st = statSync(p);
      parts.push(`${p}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`);
    } catch {
      parts.push(`${p}:-`);
    }
  }
  return parts.join('|');
}

function changedWithin(paths: readonly string[], ms: number): boolean {
  const limit = Date.now() - ms;
  for (const p of paths) {
    try {
      if (statSync(p).mtimeMs > limit) return true;
    } catch {
      // gone (or never there, like an absent runtime directory): nothing is
      // being written there; the signature poll notices when it appears
    }
  }
  return false;
}

export class PolicyWatcher {
  private engine: PolicyEngine;
  private sig: string;
  private lastError: AccessDenied | null = null;
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | null = null;
  private poller: NodeJS.Timeout | null = null;

  /** Loads the policy (throws if the first load fails) and starts watching. */
  constructor(private readonly opts: WatcherOptions) {
    this.engine = PolicyEngine.load(opts);
    this.sig = signature(this.engine.sources);
    for (const dir of this.watchedDirs()) {
      try {
        const w = watch(dir, { recursive: true, persistent: false }, () => this.schedule());
        w.on('error', () => undefined);
        this.watchers.push(w);
      } catch {
        // a directory that does not exist yet is covered by the poll
      }
    }
    const pollMs = opts.pollMs ?? 2000;
    if (pollMs > 0) {
      this.poller = setInterval(() => {
        if (signature(this.engine.sources) !== this.sig) this.schedule();
      }, pollMs);
      this.poller.unref();
    }
  }

  private watchedDirs(): string[] {
    return [this.opts.runtimeDir, this.opts.policyDir, this.opts.legacyDir].filter((d): d is string => !!d);
  }

  /** The current (last good) policy. */
  current(): PolicyEngine {
    return this.engine;
  }

  /** The error of the last reload attempt, null when it succeeded. */
  error(): AccessDenied | null {
    return this.lastError;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reload();
    }, this.opts.settleMs ?? 100);
    this.timer.unref();
  }

  /**
   * Reloads. Returns true when a new policy is in force; a load error keeps
   * the previous policy, and so do files modified within the quiet time
   * (unless `force`): they are retried once they have settled.
   */
  reload(force = false): boolean {
    let next: PolicyEngine;
    try {
      next = PolicyEngine.load(this.opts);
    } catch (err) {
      if (!(err instanceof AccessDenied)) throw err;
      this.lastError = err;
      this.opts.onError?.(err);
      return false;
    }
    // a file modified within the quiet time may still be being written
    if (!force && changedWithin(next.sources, this.opts.settleMs ?? 100)) {
      this.schedule();
      return false;
    }
    this.engine = next;
    this.sig = signature(next.sources);
    this.lastError = null;
    this.opts.onReload?.(next);
    return true;
  }

  close(): void {
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
    if (this.timer) clearTimeout(this.timer);
    if (this.poller) clearInterval(this.poller);
    this.timer = this.poller = null;
  }
}
