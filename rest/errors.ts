// The gateway's errors and how each becomes an HTTP reply. Every reply that
// is not a success is a JSON object {"error": CODE, "message": TEXT, ...};
// nothing carries a stack, a Node error code or an internal path. Routes
// throw RestError (or let a QubesdException from the caller through); the
// error handler in server.ts turns both into replies with httpReplyFor().
import { QubesdException, QubesdTransportError } from '../lib/qubesd-client.js';

export interface ErrorBody {
  error: string;
  message: string;
  [extra: string]: unknown;
}

/** An error with the status and body it should be answered with. */
export class RestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'RestError';
  }

  body(): ErrorBody {
    return { error: this.code, message: this.message, ...this.extra };
  }
}

export const badRequest = (message: string, extra: Record<string, unknown> = {}) => new RestError(400, 'bad request', message, extra);
export const unauthorized = (message = 'missing, unknown, revoked or expired token') => new RestError(401, 'unauthorized', message);
export const notFound = (message = 'no such object') => new RestError(404, 'not found', message);
export const conflict = (message: string, extra: Record<string, unknown> = {}) => new RestError(409, 'conflict', message, extra);
export const unavailable = (message: string) => new RestError(503, 'unavailable', message);

/** The Admin API call a refusal names (the qrexec form "method+arg" and its target). */
export interface RefusedCall {
  method: string;
  arg: string;
  target: string;
}

export function forbidden(call: RefusedCall, identity: string): RestError {
  const service = `${call.method}+${call.arg}`;
  return new RestError(403, 'forbidden', `the policy does not let ${identity} call ${service} on ${call.target}`, { call: { service, target: call.target } });
}

/** Qubes exception types, by what they say about the request. */
const QUBES_STATUS: Record<string, number> = {
  QubesVMNotFoundError: 404,
  QubesVMInvalidUUIDError: 404,
  QubesLabelNotFoundError: 404,
  QubesFeatureNotFoundError: 404,
  QubesTagNotFoundError: 404,
  QubesBackupProfileNotFoundError: 404,
  QubesNoSuchPropertyError: 404,
  PermissionDenied: 403,
  QubesVMNotHaltedError: 409,
  QubesVMInUseError: 409,
  QubesVMNotRunningError: 409,
  QubesVMNotStartedError: 409,
  QubesVMNotPausedError: 409,
  QubesVMNotSuspendedError: 409,
  QubesVMAlreadyExistsError: 409,
  QubesLabelInUseError: 409,
  QubesPoolInUseError: 409,
  BackupAlreadyRunningError: 409,
  QubesVMError: 409,
  QubesVMShutdownTimeoutError: 409,
  QubesMemoryError: 409,
  QubesNotImplementedError: 501,
};

/** Status of a qubesd exception: most of Qubes' errors are the caller's, so 400 by default. */
export function statusForQubes(type: string): number {
  return QUBES_STATUS[type] ?? 400;
}

/** A qubesd exception as the gateway reports it: Qubes' type and message, and the call. */
export function fromQubesd(e: QubesdException): RestError {
  return new RestError(statusForQubes(e.type), e.type, e.message || e.type, { call: e.call });
}

/** Status and body for anything a route threw. */
export function httpReplyFor(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof RestError) return { status: err.status, body: err.body() };
  if (err instanceof QubesdException) {
    const r = fromQubesd(err);
    return { status: r.status, body: r.body() };
  }
  if (err instanceof QubesdTransportError) {
    return { status: 502, body: { error: 'qubesd unavailable', message: 'qubesd did not answer the call', call: err.call } };
  }
  const e = err as { statusCode?: number; validation?: unknown; message?: string; code?: string };
  if (e && e.validation) return { status: 400, body: { error: 'bad request', message: e.message ?? 'invalid request' } };
  // fastify's own client errors (bad JSON, body too large, unsupported media type...)
  if (e && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, body: { error: 'bad request', message: cleanFastifyMessage(e.message ?? 'bad request') } };
  }
  return { status: 500, body: { error: 'internal error', message: 'the gateway failed to handle the request' } };
}

/** Fastify's messages are fine for clients; paths never appear in them, codes are stripped. */
function cleanFastifyMessage(m: string): string {
  return m.replace(/^FST_[A-Z_]+:\s*/, '');
}
