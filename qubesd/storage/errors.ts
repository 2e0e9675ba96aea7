// Storage exceptions Qubes sends that the shared errors module does not
// carry. Several of these are KeyError subclasses in Qubes, whose message is
// empty (str(KeyError()) == ''). An unsupported volume or pool operation is
// the shared QubesNotImplementedError: Qubes raises Python's own
// NotImplementedError there and drops the call, and its client re-raises a
// builtin's name as the builtin, which qvm-volume and qvm-pool do not catch.
import { QubesError, pyRepr } from '../errors.js';

export const QubesVolumeRevisionNotFoundError = () => new QubesError('QubesVolumeRevisionNotFoundError', '');
export const QubesPoolNotFoundError = () => new QubesError('QubesPoolNotFoundError', '');
export const QubesVolumeNotFoundError = () => new QubesError('QubesVolumeNotFoundError', '');
/** A KeyError too, without Qubes' __str__ fix: str() is the repr of its message, quotes included. */
export const QubesVolumeCopyTokenNotFoundError = () =>
  new QubesError('QubesVolumeCopyTokenNotFoundError', pyRepr('Token to clone volume of qube was not found'));
export const QubesVolumeCopyInUseError = (vm: string, volume: string) =>
  new QubesError('QubesVolumeCopyInUseError', `Domain volume is being cloned already: ${pyRepr(vm)}:${pyRepr(volume)}`);
