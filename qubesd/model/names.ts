// Qube name syntax (qubes.vm.validate_name with no holder).
import { QubesValueError } from '../errors.js';

export function validateVmName(name: string): void {
  if (name.length > 31) throw QubesValueError('VM name must be shorter than 32 characters');
  if (/^[0-9_.-][^\n]*$/.test(name)) throw QubesValueError('VM name cannot start with hyphen, underscore, dot or numbers');
  if (!/^[a-zA-Z][a-zA-Z0-9_.-]*$/.test(name)) throw QubesValueError('VM name contains illegal characters');
  if (name === 'Domain-0') throw QubesValueError("VM name cannot be 'Domain-0'");
  if (name === 'none' || name === 'default') throw QubesValueError("VM name cannot be 'none' nor 'default'");
  if (name.endsWith('-dm')) throw QubesValueError('VM name cannot end with -dm');
}
