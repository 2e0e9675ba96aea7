// Types for the part of autocannon (a CommonJS package without typings) that
// bench/http-load.ts uses: one run, resolved with its summary.
declare module 'autocannon' {
  interface Options {
    url: string;
    connections?: number;
    /** seconds; ignored when amount is given */
    duration?: number;
    amount?: number;
    /** seconds before a request counts as timed out */
    timeout?: number;
    /** ms between samples */
    sampleInt?: number;
    headers?: Record<string, string>;
  }
  interface Result {
    duration: number;
    errors: number;
    non2xx: number;
    requests: { total: number };
    latency: { p50: number; p99: number };
  }
  function autocannon(opts: Options): PromiseLike<Result>;
  export default autocannon;
}
