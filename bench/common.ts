// Shared helpers for benchmarks: every figure is printed as one JSON line so
// that `npm run bench` output is machine-readable.
export interface Figure { bench: string; name: string; value: number; unit: string; [k: string]: unknown }
export function report(f: Figure): void { process.stdout.write(JSON.stringify(f) + '\n'); }
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
