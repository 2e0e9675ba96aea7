// System errors in words. A reply of the Admin API must never carry what
// Node puts in an error's message (an errno code such as ENOENT, the system
// call, the path involved): those tell a caller about dom0's file system and
// are not Qubes' wording. Errors built from a failed system call use
// systemErrorWords(); scrubSystemErrorText() is the last line of defence for
// any message that still carries Node's text.
import { getSystemErrorMap } from 'node:util';

/** glibc's strerror() wording, as Python shows it, for the errors a file operation meets. */
const STRERROR: Readonly<Record<string, string>> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ENOSPC: 'No space left on device',
  EEXIST: 'File exists',
  ENAMETOOLONG: 'File name too long',
  ELOOP: 'Too many levels of symbolic links',
  EROFS: 'Read-only file system',
  EIO: 'Input/output error',
  EMFILE: 'Too many open files',
  ENFILE: 'Too many open files in system',
  EBUSY: 'Device or resource busy',
  ENOTEMPTY: 'Directory not empty',
  EXDEV: 'Invalid cross-device link',
  EINVAL: 'Invalid argument',
  EDQUOT: 'Disk quota exceeded',
  EFBIG: 'File too large',
  ENOMEM: 'Cannot allocate memory',
  EPIPE: 'Broken pipe',
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset by peer',
  ETIMEDOUT: 'Connection timed out',
  EAGAIN: 'Resource temporarily unavailable',
  ENOEXEC: 'Exec format error',
};

let uvMessages: Map<string, string> | null = null;

/** libuv's own text for a code (the one Node puts in its messages). */
function uvText(code: string): string | undefined {
  if (!uvMessages) {
    uvMessages = new Map();
    for (const [name, text] of getSystemErrorMap().values()) uvMessages.set(name, text);
  }
  return uvMessages.get(code);
}

/** The words for an errno code name ('ENOENT' → 'No such file or directory'). */
export function errnoWords(code: string): string {
  const known = STRERROR[code];
  if (known) return known;
  const text = uvText(code);
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : 'System error';
}

/** True for an error that comes from a failed system call (it has an errno code). */
export function isSystemError(e: unknown): e is NodeJS.ErrnoException & { code: string } {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string' && /^E[A-Z0-9]+$/.test((e as { code: string }).code);
}

/** What went wrong, in words only: no code, no system call, no path. */
export function systemErrorWords(e: unknown): string {
  return isSystemError(e) ? errnoWords(e.code) : 'Unexpected error';
}

// Node's form: "ENOENT: no such file or directory, open '/a/b'" (the system
// call and path are optional, a second path follows '->'), and Python's
// "[Errno 2] No such file or directory: '/a/b'".
const NODE_CODE = /\b(E[A-Z0-9]{2,}): /g;
const NODE_TAIL = /^, [a-z_]+(?: '[^']*'(?: -> '[^']*')?)?/;
const SPAWN_TEXT = /\bspawn \S+ (E[A-Z0-9]{2,})\b/g;
// a socket's: "connect ENOENT /run/x.sock", "read ECONNRESET"
const SOCKET_TEXT = /\b(?:read|write|connect|accept|listen|bind|shutdown) (E[A-Z0-9]{2,})\b(?: \/\S*)?/g;
const ERRNO_TEXT = /\[Errno -?\d+\] ([^:'\n]+)(?:: '[^']*'(?: -> '[^']*')?)?/g;

/** Replace Node's (and Python's) rendering of system errors in a message by their words. */
export function scrubSystemErrorText(message: string): string {
  if (!/E[A-Z0-9]{2,}|\[Errno/.test(message)) return message;
  let out = '';
  let last = 0;
  for (const m of message.matchAll(NODE_CODE)) {
    const code = m[1]!;
    const text = uvText(code);
    if (text === undefined || m.index! < last) continue;
    let end = m.index! + m[0].length;
    if (message.startsWith(text, end)) end += text.length;
    const tail = NODE_TAIL.exec(message.slice(end));
    if (tail) end += tail[0].length;
    out += message.slice(last, m.index) + errnoWords(code);
    last = end;
  }
  out += message.slice(last);
  return out
    .replace(SPAWN_TEXT, (_m, code: string) => `cannot run the program: ${errnoWords(code)}`)
    .replace(SOCKET_TEXT, (_m, code: string) => errnoWords(code))
    .replace(ERRNO_TEXT, (_m, words: string) => words.trim());
}
