// admin.vm.firewall.*: a qube's outgoing traffic rules, one rule per line
// (qubes/api/admin.py vm_firewall_*). Qubes lets a malformed rule escape as
// a Python ValueError, which drops the connection; we answer with a
// QubesValueError carrying the same message instead.
import type { Call, Handlers } from '../call.js';
import { ProtocolError, QubesException, QubesValueError } from '../../errors.js';
import type { Firewall } from '../../firewall/firewall.js';
import { FirewallFileError } from '../../firewall/file.js';
import { parseApiRule, RuleError, type Rule } from '../../firewall/rule.js';
import { pySplitLines } from '../../firewall/pytext.js';
import { systemErrorWords } from '../../../lib/system-error.js';

function firewall(call: Call): Firewall {
  let fw: Firewall | null;
  try {
    fw = call.services.firewalls.of(call.dest);
  } catch (e) {
    if (e instanceof FirewallFileError) throw QubesException(`firewall.xml of ${call.dest.name}: ${e.message}`);
    throw e;
  }
  if (!fw) throw QubesException(`Domain ${call.dest.name} has no firewall`);
  return fw;
}

function parseRules(payload: Buffer): Rule[] {
  if (payload.some((b) => b > 0x7f)) throw ProtocolError('Rules contains non-ASCII characters');
  try {
    return pySplitLines(payload.toString('latin1')).map(parseApiRule);
  } catch (e) {
    if (e instanceof RuleError) throw QubesValueError(e.message);
    throw e;
  }
}

export const handlers: Handlers = {
  'admin.vm.firewall.Get': (call) => firewall(call).apiText(),

  'admin.vm.firewall.Set': async (call) => {
    const rules = parseRules(call.payload);
    const fw = firewall(call);
    try {
      await fw.replace(rules);
    } catch (e) {
      // Qubes shows Python's OSError here (errno and path): the words are enough
      throw QubesException(`firewall save error: ${systemErrorWords(e)}`);
    }
  },

  'admin.vm.firewall.Reload': (call) => {
    call.app.events.fire(call.dest.name, 'firewall-changed', []);
  },
};
