// Exceptions that travel to the client. The class name is part of the wire
// protocol: the EXCEPTION frame carries it, and the Qubes client turns it back
// into the exception class of the same name. So each type here is named
// exactly as Qubes names it, and messages follow Qubes' wording.
//
// This is the bottom of qubesd: every layer (model, storage, hypervisor,
// lifecycle, backup, api) throws these, so this file imports nothing of qubesd.
import { pyRepr } from '../lib/py-repr.js';

// Messages quote names with Python's repr(), as Qubes does.
export { pyRepr };
import { scrubSystemErrorText } from '../lib/system-error.js';

export class QubesError extends Error {
  /** The exception type name sent on the wire. */
  readonly type: string;
  constructor(type: string, message: string) {
    super(message);
    this.type = type;
  }
}

/**
 * What a client is told about an error (in a reply or an event). An error
 * that is not a Qubes exception is a bug or a system failure: its text
 * (Node's error codes, paths, internals) belongs in the log only. A Qubes
 * exception built from a system error keeps the words, never Node's
 * rendering of it.
 */
export function replyError(e: unknown): [type: string, message: string] {
  if (e instanceof QubesError) return [e.type, scrubSystemErrorText(e.message)];
  return ['QubesException', 'An internal error occurred in qubesd; see its log'];
}

const err = (type: string) => (message: string) => new QubesError(type, message);

export const ProtocolError = err('ProtocolError');
export const PermissionDenied = err('PermissionDenied');
export const QubesException = err('QubesException');
export const QubesValueError = err('QubesValueError');
export const QubesInvalidTagError = err('QubesInvalidTagError');
export const QubesInvalidLabelError = err('QubesInvalidLabelError');
export const QubesInvalidLabelValueError = err('QubesInvalidLabelValueError');
export const QubesNotImplementedError = (msg = 'This feature is not available') => new QubesError('QubesNotImplementedError', msg);
export const QubesVMAlreadyExistsError = err('QubesVMAlreadyExistsError');
export const StoragePoolException = err('StoragePoolException');

export const QubesVMNotFoundError = (name: string) => new QubesError('QubesVMNotFoundError', `No such domain: ${pyRepr(name)}`);
export const QubesVMInvalidUUIDError = (uuid: string) => new QubesError('QubesVMInvalidUUIDError', `VM UUID is not valid: ${pyRepr(uuid)}`);
export const QubesNoSuchPropertyError = (prop: string, holder: string) =>
  new QubesError('QubesNoSuchPropertyError', `Invalid property ${pyRepr(prop)} of ${holder}`);
export const QubesPropertyValueError = (msg: string) => new QubesError('QubesPropertyValueError', msg);
export const QubesFeatureNotFoundError = (domain: string, feature: string) =>
  new QubesError('QubesFeatureNotFoundError', `Feature not set for domain ${domain}: ${feature}`);
export const QubesTagNotFoundError = (domain: string, tag: string) => new QubesError('QubesTagNotFoundError', `Tag not set for domain ${domain}: ${tag}`);
export const QubesLabelNotFoundError = (label: string) => new QubesError('QubesLabelNotFoundError', `Label does not exist: ${label}`);
export const QubesLabelInUseError = (what: string) => new QubesError('QubesLabelInUseError', `Label is still in use: ${what}`);
export const QubesPoolInUseError = (pool: string, msg?: string) => new QubesError('QubesPoolInUseError', msg ?? `Storage pool is in use: ${pyRepr(pool)}`);

const vmErr = (type: string, fmt: (name: string) => string) => (vm: string, msg?: string) => new QubesError(type, msg ?? fmt(vm));
export const QubesVMError = (msg: string) => new QubesError('QubesVMError', msg);
export const QubesVMInUseError = vmErr('QubesVMInUseError', (n) => `Domain is in use: ${pyRepr(n)}`);
export const QubesVMNotStartedError = vmErr('QubesVMNotStartedError', (n) => `Domain is powered off: ${pyRepr(n)}`);
export const QubesVMNotRunningError = vmErr('QubesVMNotRunningError', (n) => `Domain not running (either powered off or paused): ${pyRepr(n)}`);
export const QubesVMNotPausedError = vmErr('QubesVMNotPausedError', (n) => `Domain is not paused: ${pyRepr(n)}`);
export const QubesVMNotSuspendedError = vmErr('QubesVMNotSuspendedError', (n) => `Domain is not suspended: ${pyRepr(n)}`);
export const QubesVMNotHaltedError = vmErr('QubesVMNotHaltedError', (n) => `Domain is not powered off: ${pyRepr(n)}`);
export const QubesVMShutdownTimeoutError = vmErr('QubesVMShutdownTimeoutError', (n) => `Domain shutdown timed out: ${pyRepr(n)}`);
export const QubesBackupProfileNotFoundError = (p: string) => new QubesError('QubesBackupProfileNotFoundError', `Backup profile does not exist: ${p}`);
export const BackupCancelledError = (msg = 'Backup cancelled') => new QubesError('BackupCancelledError', msg);
export const BackupAlreadyRunningError = (msg = 'Backup already running') => new QubesError('BackupAlreadyRunningError', msg);
