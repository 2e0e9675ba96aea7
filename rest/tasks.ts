// Tasks: what an asynchronous request (an action, an import or export) is
// while it runs and after it ended. Each has an owner (the identity that
// started it; only the owner and dom0 see it), a status (pending, success,
// failure, interrupted), a progress, and its result or error.
//
// Tasks survive a gateway restart: the list is kept in a file (written
// atomically and durably on every change of status; progress goes along with
// the next one: an fsync a second, on the event loop, stalled the very
// transfer whose progress it recorded, and made the file system write back
// the volume being imported in small pieces). A
// task that was pending when the gateway stopped is loaded back as
// `interrupted`, with the reason, instead of vanishing. Completed tasks
// expire after completed_task_timeout, pending ones are aborted after
// pending_task_timeout, and at most max_tasks are kept (oldest completed
// ones go first).
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { atomicWriteFileSync } from '../lib/atomic-write.js';
import { httpReplyFor, RestError, type ErrorBody } from './errors.js';

export type TaskStatus = 'pending' | 'success' | 'failure' | 'interrupted';

export interface TaskRecord {
  id: string;
  /** what runs, e.g. "vm.start" */
  name: string;
  /** href of the object it works on, if any */
  object?: string;
  /** the identity that started it */
  identity: string;
  status: TaskStatus;
  /** 0..100 when known */
  progress?: number;
  result?: unknown;
  error?: ErrorBody;
  /** ms since the epoch */
  start: number;
  end?: number;
  updatedAt: number;
  abortionRequestedAt?: number;
}

export interface TaskLimits {
  /** seconds a task may stay pending before it is aborted */
  pending_task_timeout: number;
  /** seconds a completed task stays listed */
  completed_task_timeout: number;
  max_tasks: number;
}

export const DEFAULT_TASK_LIMITS: TaskLimits = { pending_task_timeout: 86400, completed_task_timeout: 3900, max_tasks: 200 };

/** What a running task's work gets. */
export interface TaskContext {
  readonly id: string;
  /** aborted when the task is aborted (abort action, pending timeout, shutdown) */
  readonly signal: AbortSignal;
  /** 0..100 */
  progress(percent: number): void;
}

type Listener = (t: TaskRecord) => void;

export const TASKS_BASE = '/rest/v0/tasks';

export class TaskManager {
  private readonly tasks = new Map<string, TaskRecord>();
  private readonly running = new Map<string, AbortController>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly done = new Map<string, Array<() => void>>();
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly file: string | null,
    readonly limits: TaskLimits = DEFAULT_TASK_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    this.load();
    this.sweepTimer = setInterval(() => this.sweep(), 1000);
    this.sweepTimer.unref();
  }

  private load(): void {
    if (!this.file || !existsSync(this.file)) return;
    let saved: TaskRecord[] = [];
    try {
      const parsed = JSON.parse(readFileSync(this.file, 'utf8')) as { tasks?: TaskRecord[] };
      saved = Array.isArray(parsed.tasks) ? parsed.tasks : [];
    } catch {
      // a damaged file cannot be half-written (atomic writes); start afresh
      saved = [];
    }
    const now = this.now();
    let changed = false;
    for (const t of saved) {
      if (t.status === 'pending') {
        Object.assign(t, {
          status: 'interrupted',
          end: now,
          updatedAt: now,
          error: { error: 'interrupted', message: 'the gateway stopped while the task was pending; its outcome is unknown' },
        });
        changed = true;
      }
      this.tasks.set(t.id, t);
    }
    if (changed) this.persist();
  }

  private persist(): void {
    if (!this.file) return;
    atomicWriteFileSync(this.file, JSON.stringify({ version: 1, tasks: [...this.tasks.values()] }) + '\n', { mode: 0o600, dirMode: 0o700 });
  }

  private changed(t: TaskRecord, durable: boolean): void {
    t.updatedAt = this.now();
    if (durable) this.persist();
    for (const l of this.listeners.get(t.id) ?? []) l({ ...t });
    if (t.status !== 'pending') {
      for (const r of this.done.get(t.id) ?? []) r();
      this.done.delete(t.id);
    }
  }

  /** Drops expired completed tasks and aborts tasks pending too long. */
  sweep(): void {
    const now = this.now();
    let removed = false;
    for (const t of [...this.tasks.values()]) {
      if (t.status === 'pending' && now - t.start > this.limits.pending_task_timeout * 1000) {
        this.abort(t.id, 'the task was pending longer than pending_task_timeout');
      } else if (t.status !== 'pending' && t.end !== undefined && now - t.end > this.limits.completed_task_timeout * 1000) {
        this.tasks.delete(t.id);
        removed = true;
      }
    }
    if (removed) this.persist();
  }

  /** Makes room for one more task; false if every kept task is still pending. */
  private makeRoom(): boolean {
    if (this.tasks.size < this.limits.max_tasks) return true;
    const completed = [...this.tasks.values()].filter((t) => t.status !== 'pending').sort((a, b) => (a.end ?? 0) - (b.end ?? 0));
    while (this.tasks.size >= this.limits.max_tasks && completed.length) this.tasks.delete(completed.shift()!.id);
    return this.tasks.size < this.limits.max_tasks;
  }

  /**
   * Starts `work` as a task owned by `identity`; returns its record at once.
   * The work's resolved value is the result (JSON); a thrown error becomes
   * the task's error as the HTTP reply would have carried it.
   */
  run(identity: string, name: string, object: string | undefined, work: (ctx: TaskContext) => Promise<unknown>): TaskRecord {
    if (!this.makeRoom()) throw new RestError(503, 'too many tasks', `max_tasks (${this.limits.max_tasks}) tasks are pending`);
    const now = this.now();
    const t: TaskRecord = {
      id: randomBytes(8).toString('hex'),
      name,
      identity,
      status: 'pending',
      start: now,
      updatedAt: now,
      ...(object ? { object } : {}),
    };
    this.tasks.set(t.id, t);
    const ac = new AbortController();
    this.running.set(t.id, ac);
    this.persist();
    const ctx: TaskContext = {
      id: t.id,
      signal: ac.signal,
      progress: (p) => {
        if (t.status !== 'pending') return;
        t.progress = Math.max(0, Math.min(100, Math.round(p * 100) / 100));
        this.changed(t, false);
      },
    };
    void Promise.resolve()
      .then(() => work(ctx))
      .then(
        (result) => this.finish(t, 'success', { result: result === undefined ? null : result, progress: 100 }),
        (err) => this.finish(t, ac.signal.aborted ? 'interrupted' : 'failure', { error: ac.signal.aborted ? abortedError(ac.signal) : httpReplyFor(err).body }),
      );
    return { ...t };
  }

  private finish(t: TaskRecord, status: TaskStatus, fields: Partial<TaskRecord>): void {
    this.running.delete(t.id);
    if (t.status !== 'pending') return;
    // an abort that came after the work finished does not change its outcome
    Object.assign(t, { status, end: this.now(), ...fields });
    if (!this.tasks.has(t.id)) return;
    this.changed(t, true);
  }

  /** A task as `identity` may see it (dom0 sees all), or null. */
  get(id: string, identity: string): TaskRecord | null {
    const t = this.tasks.get(id);
    if (!t || (identity !== 'dom0' && t.identity !== identity)) return null;
    return { ...t };
  }

  list(identity: string): TaskRecord[] {
    return [...this.tasks.values()].filter((t) => identity === 'dom0' || t.identity === identity).map((t) => ({ ...t }));
  }

  /** Resolves when the task is no longer pending (or is gone). */
  async wait(id: string, signal?: AbortSignal): Promise<TaskRecord | null> {
    const t = this.tasks.get(id);
    if (!t) return null;
    if (t.status === 'pending') {
      await new Promise<void>((resolve) => {
        const list = this.done.get(id) ?? [];
        list.push(resolve);
        this.done.set(id, list);
        signal?.addEventListener('abort', () => resolve(), { once: true });
      });
    }
    const now = this.tasks.get(id);
    return now ? { ...now } : { ...t };
  }

  /** Calls `listener` with every update of the task; returns the unsubscribe function. */
  watch(id: string, listener: Listener): () => void {
    const set = this.listeners.get(id) ?? new Set<Listener>();
    set.add(listener);
    this.listeners.set(id, set);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  /** Requests the abortion of a pending task; false if it is not pending. */
  abort(id: string, reason = 'aborted on request'): boolean {
    const t = this.tasks.get(id);
    const ac = this.running.get(id);
    if (!t || t.status !== 'pending') return false;
    t.abortionRequestedAt = this.now();
    // the work is told to stop; the task ends now, whatever the work does later
    ac?.abort(new Error(reason));
    this.finish(t, 'interrupted', { error: { error: 'interrupted', message: reason } });
    return true;
  }

  /** Forgets a completed task; false if there is none or it is pending. */
  remove(id: string): boolean {
    const t = this.tasks.get(id);
    if (!t || t.status === 'pending') return false;
    this.tasks.delete(id);
    this.persist();
    return true;
  }

  /** Stops the timers; pending tasks are left pending in the file (the next start marks them interrupted). */
  close(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }
}

function abortedError(signal: AbortSignal): ErrorBody {
  const reason = signal.reason instanceof Error ? signal.reason.message : 'aborted';
  return { error: 'interrupted', message: reason };
}

export function taskView(t: TaskRecord): Record<string, unknown> {
  return { ...t, href: `${TASKS_BASE}/${t.id}` };
}
