// The batch evaluator behind `qubes-policy-eval`: JSON requests in, one JSON
// answer per line out, in order. The policy is loaded once; a policy that
// does not load makes every answer a load error (as the real daemon denies
// everything then).

import { readFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { loadErrorRecord, resolutionRecord, type AnswerRecord } from './answer.js';
import { AccessDenied } from './errors.js';
import { PolicyEngine, type EngineOptions } from './policy-engine.js';
import { systemView, type SystemInfo, type SystemView } from './system-info.js';

export interface EvalStreamOptions extends EngineOptions {
  systemInfoFile: string;
}

/** One answer for one request line (an unparsable line gets an error record). */
export function answerLine(line: string, engine: PolicyEngine | AccessDenied, view: SystemView, loadWarnings: string[]): AnswerRecord {
  let q: { [k: string]: unknown };
  try {
    q = JSON.parse(line);
    if (!q || typeof q !== 'object' || Array.isArray(q)) throw new Error('not a JSON object');
  } catch (err) {
    return {
      id: null,
      result: 'error',
      stage: 'request',
      error_type: 'RequestError',
      error: `invalid request line: ${(err as Error).message}`,
      rule: null,
      response: 'result=deny',
      eval_simple: 'result=deny',
      notify: true,
      warnings: [],
    };
  }
  const id = q['id'] ?? null;
  if (engine instanceof AccessDenied) return loadErrorRecord(id, engine, loadWarnings);
  const str = (k: string) => (typeof q[k] === 'string' ? (q[k] as string) : '');
  if (typeof q['service'] !== 'string' || typeof q['source'] !== 'string') {
    return {
      id,
      result: 'error',
      stage: 'request',
      error_type: 'RequestError',
      error: 'request needs "service" and "source" strings',
      rule: null,
      response: 'result=deny',
      eval_simple: 'result=deny',
      notify: true,
      warnings: [],
    };
  }
  const res = engine.policy.evaluate(
    { service: str('service'), argument: str('argument'), source: str('source'), target: str('target'), requestedSource: str('requested_source') || null },
    view,
  );
  return resolutionRecord(id, res);
}

export async function runEvalStream(opts: EvalStreamOptions, input: Readable, output: Writable): Promise<void> {
  const system = JSON.parse(readFileSync(opts.systemInfoFile, 'utf8')) as SystemInfo;
  const view = systemView(system);
  let engine: PolicyEngine | AccessDenied;
  let loadWarnings: string[] = [];
  try {
    engine = PolicyEngine.load(opts);
  } catch (err) {
    if (!(err instanceof AccessDenied)) throw err;
    engine = err;
  }
  if (!(engine instanceof AccessDenied)) loadWarnings = [...engine.policy.loadWarnings];
  let pending = '';
  let out = '';
  const flush = async (): Promise<void> => {
    if (!out) return;
    const chunk = out;
    out = '';
    if (!output.write(chunk)) await new Promise<void>((r) => output.once('drain', () => r()));
  };
  input.setEncoding('utf8');
  for await (const chunk of input) {
    pending += chunk as string;
    let start = 0;
    let nl: number;
    while ((nl = pending.indexOf('\n', start)) >= 0) {
      const line = pending.slice(start, nl);
      start = nl + 1;
      if (line.trim()) out += JSON.stringify(answerLine(line, engine, view, loadWarnings)) + '\n';
    }
    pending = pending.slice(start);
    if (out.length > 1 << 16) await flush();
  }
  if (pending.trim()) out += JSON.stringify(answerLine(pending, engine, view, loadWarnings)) + '\n';
  await flush();
}
