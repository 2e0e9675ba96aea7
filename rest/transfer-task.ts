// A disk or backup transfer as a task: the HTTP request carries the data, so
// the work happens in the request, and the task mirrors it for anyone who
// wants to watch (progress by bytes, success or failure, abort: the abort
// action stops the transfer). The task's href goes out in the `X-Task`
// response header before any data.
import type { FastifyRequest } from 'fastify';
import type { RestContext } from './context.js';
import { TASKS_BASE, type TaskContext } from './tasks.js';

export class Transfer {
  private settle!: { resolve: (v: unknown) => void; reject: (e: unknown) => void };
  private constructor(
    readonly href: string,
    private readonly t: TaskContext,
  ) {}

  static start(ctx: RestContext, req: FastifyRequest, name: string, object: string): Promise<Transfer> {
    return new Promise((ready) => {
      const record = ctx.tasks.run(
        req.token.identity,
        name,
        object,
        (t) =>
          new Promise((resolve, reject) => {
            const tr = new Transfer(`${TASKS_BASE}/${record.id}`, t);
            tr.settle = { resolve, reject };
            ready(tr);
          }),
      );
    });
  }

  get signal(): AbortSignal {
    return this.t.signal;
  }

  progress(done: number, total: number): void {
    if (total > 0) this.t.progress((100 * done) / total);
  }

  succeed(result: unknown): void {
    this.settle.resolve(result);
  }

  fail(error: unknown): void {
    this.settle.reject(error);
  }

  /** Counts what flows through, for progress (total: expected bytes). */
  async *count<T extends Buffer | [number, Buffer]>(input: AsyncIterable<T>, total: number): AsyncGenerator<T> {
    const add = this.counter(total);
    for await (const item of input) {
      add(Array.isArray(item) ? item[1].length : (item as Buffer).length);
      yield item;
    }
  }

  /** The same for a stream read by listeners: call it with each piece's
   * length; it throws once the task was aborted. */
  counter(total: number): (n: number) => void {
    let done = 0;
    let last = 0;
    return (n) => {
      if (this.signal.aborted) throw new Error('the task was aborted');
      done += n;
      const now = Date.now();
      if (now - last > 200) {
        last = now;
        this.progress(done, total);
      }
    };
  }
}
