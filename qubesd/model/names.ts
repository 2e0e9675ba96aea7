// Qube name syntax (qubes.vm.validate_name with no holder), raised as Qubes
// raises it. The rule itself: lib/qube-names.ts.
import { qubeNameError } from '../../lib/qube-names.js';
import { QubesValueError } from '../errors.js';

export function validateVmName(name: string): void {
  const problem = qubeNameError(name);
  if (problem !== null) throw QubesValueError(problem);
}
