// Turns a resolution into the answers qrexec sees: the policy daemon's
// response text, `policy.EvalSimple`'s verdict, and the JSON record the
// evaluator CLI prints (the shape of the conformance data).

import { AccessDenied, EvaluationError } from './errors.js';
import { allowResponse, approveAsk, type AllowResolution, type AskResolution, type Resolution } from './evaluator.js';
import { ruleLocation } from './rule.js';

export interface ResponseOptions {
  /** take the intended target as the user's choice for `ask` */
  assumeYesForAsk?: boolean;
  /** answer allow/deny only, without target details */
  justEvaluate?: boolean;
}

/** The response of an allow, or a deny with the reason. */
export function executeAllow(res: AllowResolution, justEvaluate = false): { response: string; error: AccessDenied | null } {
  if (justEvaluate) return { response: 'result=allow', error: null };
  try {
    return { response: allowResponse(res), error: null };
  } catch (err) {
    if (err instanceof AccessDenied) return { response: 'result=deny', error: err };
    throw err;
  }
}

/**
 * The daemon's answer when no one is asked: allow/deny per the resolution,
 * `ask` approved for the intended target when assumeYesForAsk is set, denied
 * otherwise.
 */
export function responseFor(res: Resolution, opts: ResponseOptions = {}): string {
  if (res.result === 'allow') return executeAllow(res, opts.justEvaluate).response;
  if (res.result === 'ask' && opts.assumeYesForAsk) {
    try {
      return executeAllow(approveAsk(res, res.request.target.text), opts.justEvaluate).response;
    } catch (err) {
      if (err instanceof AccessDenied) return 'result=deny';
      throw err;
    }
  }
  return 'result=deny';
}

function errorText(err: AccessDenied): string {
  return err instanceof EvaluationError && err.referenceText !== null ? err.referenceText : err.message;
}

export type AnswerRecord = { [key: string]: unknown };

/** The JSON record for one evaluated request (see conformance/policy/compare.py). */
export function resolutionRecord(id: unknown, res: Resolution): AnswerRecord {
  const warnings = res.warnings;
  const rule = res.rule ? ruleLocation(res.rule) : null;
  switch (res.result) {
    case 'error': {
      const out: AnswerRecord = {
        id,
        result: 'error',
        stage: res.stage,
        error_type: res.errorType,
        error: res.error,
        rule,
        response: 'result=deny',
        eval_simple: 'result=deny',
      };
      if (res.stage === 'request') out['notify'] = res.notify;
      out['warnings'] = warnings;
      return out;
    }
    case 'deny':
      return { id, result: 'deny', rule, reason: res.reason, notify: res.notify, response: 'result=deny', eval_simple: 'result=deny', warnings };
    case 'allow': {
      const { response, error } = executeAllow(res);
      return {
        id,
        result: 'allow',
        rule,
        target: res.target,
        user: res.user,
        autostart: res.autostart,
        notify: res.notify,
        eval_simple: 'result=allow',
        response,
        response_error: error ? errorText(error) : null,
        warnings,
      };
    }
    case 'ask':
      return askRecord(id, res, rule);
  }
}

function askRecord(id: unknown, res: AskResolution, rule: string | null): AnswerRecord {
  const out: AnswerRecord = {
    id,
    result: 'ask',
    rule,
    targets_for_ask: res.targetsForAsk,
    default_target: res.defaultTarget,
    user: res.user,
    autostart: res.autostart,
    notify: res.notify,
  };
  let approved: AllowResolution;
  try {
    approved = approveAsk(res, res.request.target.text);
  } catch (err) {
    if (!(err instanceof AccessDenied)) throw err;
    return { ...out, response: 'result=deny', response_error: errorText(err), eval_simple: 'result=deny', warnings: res.warnings };
  }
  const { response, error } = executeAllow(approved);
  return { ...out, eval_simple: 'result=allow', response, response_error: error ? errorText(error) : null, warnings: res.warnings };
}

/** The record every request gets when the policy could not be loaded. */
export function loadErrorRecord(id: unknown, err: AccessDenied, warnings: string[]): AnswerRecord {
  return {
    id,
    result: 'error',
    stage: 'load',
    error_type: err.errorType,
    error: err.message,
    rule: null,
    response: 'result=deny',
    eval_simple: 'result=deny',
    warnings,
  };
}
