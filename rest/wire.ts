// Reading the text replies of the Admin API into JSON values: admin.vm.List
// lines, property lines (GetAll, Get), "key=value" lines (volume.Info,
// pool.Info, CurrentState) and newline lists.

export interface ListedVm {
  name: string;
  klass: string;
  state: string;
  uuid: string;
}

/** admin.vm.List: "name class=X state=Y uuid=Z" per line. */
const LIST_LINE = /^(\S+) class=(\S*) state=(\S*)(?: uuid=(\S*))?/gm;

export function parseVmList(text: string): ListedVm[] {
  const out: ListedVm[] = [];
  for (const m of text.matchAll(LIST_LINE)) out.push({ name: m[1]!, klass: m[2]!, state: m[3]!, uuid: m[4] ?? '' });
  return out;
}

export interface PropertyValue {
  value: unknown;
  type: string;
  isDefault: boolean;
}

const PROPERTY_VALUE = /^default=(True|False) type=(\S+) ?(.*)$/s;

/** "default=True type=int 400" (the text after the property's name) as a typed value. */
export function parsePropertyValue(text: string): PropertyValue {
  const m = PROPERTY_VALUE.exec(text);
  if (!m) return { value: text, type: 'str', isDefault: false };
  const [, def, type, raw] = m as unknown as [string, string, string, string];
  return { value: typed(type, raw), type, isDefault: def === 'True' };
}

function typed(type: string, raw: string): unknown {
  switch (type) {
    case 'bool':
      return raw === '' ? null : raw === 'True';
    case 'int':
      return raw === '' ? null : Number(raw);
    case 'vm':
    case 'label':
      return raw === '' ? null : raw;
    default:
      return raw;
  }
}

const ESCAPE = /\\(\\|n)/g;

/** A property line's text after its name, with GetAll's \\n and \\\\ escapes undone. */
function unescapeValue(text: string): string {
  return text.includes('\\') ? text.replace(ESCAPE, (_, c: string) => (c === 'n' ? '\n' : '\\')) : text;
}

/** Up to this many properties asked for, each is looked up in the reply rather than every line parsed. */
const FEW = 8;
/** no property name has a blank, a newline, or none at all */
const NOT_A_NAME = /\s|^$/;

/**
 * admin.vm.property.GetAll: "name default=... type=... value" per line, \n
 * and \\ escaped. `only`: just these properties; the others are not parsed
 * (a 1000-qube collection asking for one property made 50 000 values and
 * dropped all but 1000, and collecting them was a fifth of its time).
 */
export function parseGetAll(text: string, only?: ReadonlySet<string>): Map<string, PropertyValue> {
  const out = new Map<string, PropertyValue>();
  if (only && only.size <= FEW) {
    for (const name of only) {
      // a property name has no blank nor newline: a field name asked for with one
      // could otherwise match across the end of a line
      if (NOT_A_NAME.test(name)) continue;
      // a line starts the text or follows a newline; values hold no raw newline
      const key = name + ' ';
      let start = 0;
      if (!text.startsWith(key)) {
        const at = text.indexOf('\n' + key);
        if (at < 0) continue;
        start = at + 1;
      }
      const end = text.indexOf('\n', start);
      out.set(name, parsePropertyValue(unescapeValue(text.slice(start + key.length, end < 0 ? text.length : end))));
    }
    return out;
  }
  for (const line of text.split('\n')) {
    if (!line) continue;
    const sp = line.indexOf(' ');
    const name = line.slice(0, sp);
    if (only && !only.has(name)) continue;
    out.set(name, parsePropertyValue(unescapeValue(line.slice(sp + 1))));
  }
  return out;
}

/** "key=value" lines (volume.Info, pool.Info); numbers and booleans typed. */
export function parseKeyValues(text: string, sep = '\n'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const line of text.split(sep)) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const v = line.slice(eq + 1);
    out[line.slice(0, eq)] = v === 'True' ? true : v === 'False' ? false : /^-?\d+$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : v;
  }
  return out;
}

export function parseLines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

/** A JSON value as an Admin API property payload. */
export function toWire(value: unknown): string {
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (value === null) return '';
  return String(value);
}

/**
 * The entry of admin.vm.List called on `dest` that is `dest` (called on dom0,
 * the list holds every qube the caller may see).
 */
export function pickVm(listed: ListedVm[], dest: string): ListedVm | undefined {
  return listed.find((v) => v.name === dest || `uuid:${v.uuid}` === dest);
}
