// The one rule for qube names (Qubes' qubes.vm.validate_name with no holder):
// qubesd refuses a bad name with Qubes' message, the handler program refuses
// a caller or target that cannot be a qube, the hypervisor layer refuses to
// write a domain for one. All of them ask here.

// Module constants: a regular expression literal is a new object each time
// it is evaluated, and every Admin API call checks two names (four objects a
// call, measured with V8's sampling heap profiler).
const BAD_START = /^[0-9_.-][^\n]*$/;
const GOOD_NAME = /^[a-zA-Z][a-zA-Z0-9_.-]*$/;

/** Why `name` cannot name a qube, in Qubes' words and order; null if it can. */
export function qubeNameError(name: string): string | null {
  if (name.length > 31) return 'VM name must be shorter than 32 characters';
  if (BAD_START.test(name)) return 'VM name cannot start with hyphen, underscore, dot or numbers';
  if (!GOOD_NAME.test(name)) return 'VM name contains illegal characters';
  if (name === 'Domain-0') return "VM name cannot be 'Domain-0'";
  if (name === 'none' || name === 'default') return "VM name cannot be 'none' nor 'default'";
  if (name.endsWith('-dm')) return 'VM name cannot end with -dm';
  return null;
}

export function isValidQubeName(name: string): boolean {
  return qubeNameError(name) === null;
}
