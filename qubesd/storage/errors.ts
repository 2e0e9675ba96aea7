// Storage exceptions Qubes sends that the shared errors module does not
// carry. Several of these are KeyError subclasses in Qubes, whose message is
// empty (str(KeyError()) == '').
import { QubesError, pyRepr } from '../errors.js';

export const QubesVolumeRevisionNotFoundError = () => new QubesError('QubesVolumeRevisionNotFoundError', '');
export const QubesPoolNotFoundError = () => new QubesError('QubesPoolNotFoundError', '');
export const QubesVolumeNotFoundError = () => new QubesError('QubesVolumeNotFoundError', '');
/** A KeyError too, without Qubes' __str__ fix: str() is the repr of its message, quotes included. */
export const QubesVolumeCopyTokenNotFoundError = () =>
  new QubesError('QubesVolumeCopyTokenNotFoundError', pyRepr('Token to clone volume of qube was not found'));
export const QubesVolumeCopyInUseError = (vm: string, volume: string) =>
  new QubesError('QubesVolumeCopyInUseError', `Domain volume is being cloned already: ${pyRepr(vm)}:${pyRepr(volume)}`);
/**
 * An unsupported volume or pool operation. Qubes raises Python's own
 * NotImplementedError, which is no QubesException: its qubesd drops the
 * connection and the client says only "Got empty response from qubesd". We
 * answer with the message, under Qubes' QubesNotImplementedError: the client
 * raises an exception type it was sent by name when that name is a Python
 * builtin, and an uncaught builtin NotImplementedError ended qvm-volume and
 * qvm-pool with a traceback, where QubesNotImplementedError is a
 * QubesException that they show as an error message.
 */
export const NotImplementedErr = (msg: string) => new QubesError('QubesNotImplementedError', msg);
