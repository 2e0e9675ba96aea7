// The Admin API's text for properties of qubes and of the system
// (admin.vm.property.Get/GetDefault/GetAll, admin.property.*): "default=...
// type=... value" as Qubes' qubes/api/admin.py writes it. The model holds the
// values and their defaults; how a reply spells them is the API's business.
import { getDefault, getValue, isDefault, NoValue, type Holder, type PropDef } from '../../model/properties.js';
import { wireStr, type Value } from '../../model/values.js';

/** admin.*property.Get: "default=<bool> type=<type> <value>". */
export function serializeProperty(h: Holder, def: PropDef): string {
  let v: Value;
  try {
    v = getValue(h, def);
  } catch (e) {
    if (e instanceof NoValue) return `default=True type=${def.wire} `;
    throw e;
  }
  return `default=${isDefault(h, def) ? 'True' : 'False'} type=${def.wire} ${wireStr(v)}`;
}

/** admin.*property.GetDefault: "type=<type> <value>", or nothing when no default. */
export function serializeDefault(h: Holder, def: PropDef): string | null {
  let v: Value;
  try {
    v = getDefault(h, def);
  } catch (e) {
    if (e instanceof NoValue) return null;
    throw e;
  }
  return `type=${def.wire} ${wireStr(v)}`;
}

/** admin.*property.GetAll: one line per property, escaped. */
export function serializeAll(h: Holder): string {
  let out = '';
  for (const def of h.table.list) {
    out += `${def.name} ${serializeProperty(h, def).replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n`;
  }
  return out;
}
