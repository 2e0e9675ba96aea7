// internal.GetSystemInfo: the qubes as the qrexec policy engine sees them,
// as JSON in Python's json.dumps layout.
import type { Handlers } from '../call.js';

/** Python json.dumps with default settings (", " and ": " separators, ASCII only). */
export function pyJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') {
    return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  }
  if (Array.isArray(v)) return '[' + v.map(pyJson).join(', ') + ']';
  return '{' + Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pyJson(k)}: ${pyJson(x)}`).join(', ') + '}';
}

export const handlers: Handlers = {
  'internal.GetSystemInfo': (call) => pyJson(call.app.systemInfo()),
};
