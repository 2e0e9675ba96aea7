// Qube labels (the padlock colours) and the label name/value rules of
// qubes.utils.validate_label_name / validate_label_value.
import { QubesInvalidLabelError, QubesInvalidLabelValueError, QubesLabelNotFoundError } from '../errors.js';

/** Labels with index <= this are Qubes' defaults and cannot be removed. */
export const MAX_DEFAULT_LABEL = 8;

export const DEFAULT_LABELS: ReadonlyArray<readonly [number, string, string]> = [
  [1, '0xcc0000', 'red'],
  [2, '0xf57900', 'orange'],
  [3, '0xedd400', 'yellow'],
  [4, '0x73d216', 'green'],
  [5, '0x555555', 'gray'],
  [6, '0x3465a4', 'blue'],
  [7, '0x75507b', 'purple'],
  [8, '0x000000', 'black'],
];

export class Label {
  constructor(
    readonly index: number,
    readonly color: string,
    readonly name: string,
    /**
     * Created through admin.label.Create in this daemon's lifetime. Qubes
     * keeps such a label's colour as raw payload bytes until the next load,
     * which changes how it answers about it (see the label handlers).
     */
    readonly createdByApi = false,
  ) {}

  /** Python repr, as Qubes puts a label object into messages. */
  repr(): string {
    const color = this.createdByApi ? `b'${this.color.replace(/\n/g, '\\n')}'` : `'${this.color}'`;
    return `Label(${this.index}, ${color}, '${this.name}')`;
  }
}

const LABEL_NAME_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.';
const HEXDIGITS = '0123456789abcdefABCDEF';

export function validateLabelName(name: string, creation = false): void {
  if (!name) throw QubesInvalidLabelError('Label name must be set');
  if (creation && /^\d+$/.test(name)) throw QubesInvalidLabelError('Label must not be a digit');
  for (const c of name) {
    if (!LABEL_NAME_CHARS.includes(c)) throw QubesInvalidLabelError('Label must be in safe set: ' + LABEL_NAME_CHARS);
  }
}

export function validateLabelValue(raw: Buffer): void {
  if (raw.length === 0) throw QubesInvalidLabelValueError('Label value must be set');
  for (const b of raw) if (b > 0x7f) throw QubesInvalidLabelValueError('Label value must be encoded in ASCII');
  const v = raw.toString('latin1').replace(/^[ \t\n\r\x0b\x0c]+|[ \t\n\r\x0b\x0c]+$/g, '');
  if (v.length !== 8) throw QubesInvalidLabelValueError('Label value must have length of 8');
  if (!v.startsWith('0x')) throw QubesInvalidLabelValueError('Label value must start with: 0x');
  for (const c of v.slice(2)) {
    if (!HEXDIGITS.includes(c)) {
      throw QubesInvalidLabelValueError('Label value must only contain hexadecimal digits after prefix: ' + HEXDIGITS);
    }
  }
}

/** Labels by index (Qubes' app.labels dict, insertion ordered) with name lookup. */
export class LabelSet {
  private byIndex = new Map<number, Label>();

  add(label: Label): void {
    this.byIndex.set(label.index, label);
  }
  remove(label: Label): void {
    this.byIndex.delete(label.index);
  }
  all(): Label[] {
    return [...this.byIndex.values()];
  }
  maxIndex(): number {
    return Math.max(MAX_DEFAULT_LABEL, ...this.byIndex.keys());
  }

  byName(name: string): Label | undefined {
    for (const l of this.byIndex.values()) if (l.name === name) return l;
    return undefined;
  }

  /** Qubes' app.get_label: by name, then a number given as text is an index. */
  get(key: string): Label {
    const l = this.byName(key);
    if (l) return l;
    if (/^[ \t]*[+-]?\d+[ \t]*$/.test(key)) {
      const byIdx = this.byIndex.get(Number(key));
      if (byIdx) return byIdx;
    }
    throw QubesLabelNotFoundError(key);
  }
}
