// Backup profiles: `<name>.conf` YAML files in the profile directory, as
// read by admin.backup.Info/Execute/Cancel. Every profile is checked
// against a JSON schema; mistakes are reported with the file and the key.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import AjvModule, { type ErrorObject } from 'ajv';
import { parseDocument } from 'yaml';
import { KNOWN_COMPRESSION_FILTERS, OPTIONAL_COMPRESSION_FILTERS } from './format.js';
import { systemErrorWords } from '../../lib/system-error.js';
import { pySetOrder } from '../../lib/py-set-order.js';

export const DEFAULT_PROFILE_DIR = '/etc/qubes/backup';

export interface BackupProfile {
  /** null: every qube whose include_in_backups property is true. */
  include: string[] | null;
  exclude: string[];
  /** a qube's name, or (as Qubes' domain lookup takes it) its qid; any
   * other value finds no qube */
  destinationVm: unknown;
  destinationPath: string;
  /** false: none; true: gzip; a string: that filter program (one Qubes'
   * restore accepts). */
  compression: boolean | string;
  passphraseText?: string;
  passphraseVm?: string;
}

export class ProfileError extends Error {
  constructor(
    readonly file: string,
    readonly key: string | undefined,
    readonly detail: string,
  ) {
    super(`${file}: ${key ? `${key}: ` : ''}${detail}`);
    this.name = 'ProfileError';
  }
}

/** A key Qubes requires is absent: reported in Qubes' words. */
export class ProfileMissingKeyError extends ProfileError {
  constructor(file: string, key: string) {
    super(file, key, 'missing required key');
    this.name = 'ProfileMissingKeyError';
  }
}

export class ProfileNotFoundError extends Error {
  constructor(readonly profile: string) {
    super(`Backup profile does not exist: ${profile}`);
    this.name = 'ProfileNotFoundError';
  }
}

const qubeRef = { type: 'string', minLength: 1, pattern: '^(?:[$@]tag:[A-Za-z0-9_-]+|[$@]type:[A-Za-z0-9_]+|[A-Za-z][A-Za-z0-9_.-]*)$' };
const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    include: { anyOf: [{ type: 'null' }, { type: 'array', items: qubeRef }] },
    exclude: { type: 'array', items: qubeRef },
    // a name, or a qid as Qubes' lookup takes it; the service refuses any
    // value that finds no qube in Qubes' words
    destination_vm: {},
    destination_path: { type: 'string', minLength: 1 },
    compression: { anyOf: [{ type: 'boolean' }, { type: 'string', minLength: 1 }] },
    passphrase_text: { type: 'string', minLength: 1 },
    passphrase_vm: { type: 'string', minLength: 1, pattern: '^[A-Za-z][A-Za-z0-9_.-]*$' },
  },
} as const;

/** the keys Qubes' profile loader requires, in the order it reads them
 * (it requires `include` too; a profile without it backs up what
 * include_in_backups selects, as `include: null` does); a data that is not
 * a mapping is refused by the schema's type */
const REQUIRED = ['destination_vm', 'destination_path'] as const;

const Ajv = AjvModule as unknown as typeof AjvModule.default;
const validate = new Ajv({ allErrors: true, strict: true }).compile(SCHEMA);

function keyOf(err: ErrorObject): string | undefined {
  const parts = err.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (err.keyword === 'additionalProperties') parts.push(String((err.params as { additionalProperty: string }).additionalProperty));
  if (parts.length === 0) return undefined;
  return parts.reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '');
}

function describe(err: ErrorObject): string {
  switch (err.keyword) {
    case 'additionalProperties':
      return 'unknown key';
    case 'pattern':
      return 'not a valid qube name, $tag:<tag> or $type:<class>';
    case 'anyOf':
      return 'wrong type';
    default:
      return err.message ?? err.keyword;
  }
}

/** Qubes refuses only '/' in a profile name (`.x` is the file .x.conf); ours
 * keeps to printable ASCII without spaces, which is all qrexec passes. */
export function profileNameValid(name: string): boolean {
  return /^[\x21-\x7e]+$/.test(name) && !name.includes('/');
}

/** Validates parsed profile data; `file` only labels the messages. Throws
 * a ProfileError listing every mistake found. */
export function parseProfile(data: unknown, file: string): BackupProfile {
  // Qubes reads these first, in this order, and names the first missing
  // (they are not in the schema: this is the one check of them)
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    for (const key of REQUIRED) if (!Object.hasOwn(data, key)) throw new ProfileMissingKeyError(file, key);
  }
  if (!validate(data)) {
    const all = validate.errors ?? [];
    // For a union (anyOf) keep the most specific complaint: an error inside
    // the value beats "wrong type", which beats each branch's type error.
    const errors = all.filter((e) => {
      if (e.keyword === 'anyOf') return !all.some((o) => o.instancePath.startsWith(e.instancePath + '/'));
      if (e.keyword === 'type') return !all.some((o) => o.keyword === 'anyOf' && o.instancePath === e.instancePath);
      return true;
    });
    const messages = [
      ...new Set(
        errors.map((e) => {
          const k = keyOf(e);
          return `${k ? `${k}: ` : ''}${describe(e)}`;
        }),
      ),
    ];
    const first = errors[0]!;
    throw new ProfileError(file, messages.length === 1 ? keyOf(first) : undefined, messages.length === 1 ? describe(first) : messages.join('; '));
  }
  const d = data as unknown as Record<string, unknown>;
  // A profile without a passphrase is valid: qvm-backup writes one to show
  // the summary (admin.backup.Info) before it asks for the passphrase; only
  // running it needs one (resolvePassphrase). Two sources are a mistake.
  if (d.passphrase_text !== undefined && d.passphrase_vm !== undefined) {
    throw new ProfileError(file, 'passphrase_text', 'give only one of passphrase_text and passphrase_vm');
  }
  // Only filters that Qubes' restore accepts too: a backup compressed with
  // anything else could not be restored by qvm-backup-restore.
  const filters: readonly string[] = [...KNOWN_COMPRESSION_FILTERS, ...OPTIONAL_COMPRESSION_FILTERS];
  if (typeof d.compression === 'string' && !filters.includes(d.compression)) {
    throw new ProfileError(
      file,
      'compression',
      `unsupported compression filter ${JSON.stringify(d.compression)} (use True, False or one of ${filters.join(', ')})`,
    );
  }
  return {
    include: (d.include as string[] | null | undefined) ?? null,
    exclude: (d.exclude as string[] | undefined) ?? [],
    destinationVm: d.destination_vm,
    destinationPath: d.destination_path as string,
    compression: (d.compression as boolean | string | undefined) ?? true,
    ...(d.passphrase_text !== undefined ? { passphraseText: d.passphrase_text as string } : {}),
    ...(d.passphrase_vm !== undefined ? { passphraseVm: d.passphrase_vm as string } : {}),
  };
}

/** Parses YAML the way PyYAML's safe_load does (YAML 1.1: True, yes, on
 * are booleans), rejecting duplicate keys and anything but one document. */
export function parseProfileText(text: string, file: string): BackupProfile {
  const doc = parseDocument(text, { version: '1.1', uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line;
    throw new ProfileError(
      file,
      undefined,
      `YAML syntax error${line ? ` at line ${line}` : ''}: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
    );
  }
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (err) {
    // an alias without its anchor is found only here (yaml throws a ReferenceError)
    throw new ProfileError(file, undefined, `YAML error: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseProfile(data, file);
}

export async function loadProfile(name: string, dir = DEFAULT_PROFILE_DIR): Promise<BackupProfile> {
  if (!profileNameValid(name)) throw new ProfileNotFoundError(name);
  const file = join(dir, `${name}.conf`);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    // Qubes checks os.path.exists() first: any name that leads to no file is a missing profile
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENAMETOOLONG' || code === 'ENOTDIR' || code === 'ELOOP') throw new ProfileNotFoundError(name);
    throw new ProfileError(`${name}.conf`, undefined, systemErrorWords(err));
  }
  return parseProfileText(text, file);
}

export interface QubeInfo {
  name: string;
  qid: number;
  klass: string;
  tags: string[];
  includeInBackupsDefault: boolean;
}

function matches(q: QubeInfo, ref: string): boolean {
  const r = ref.replace(/^\$/, '@');
  if (r.startsWith('@tag:')) return q.tags.includes(r.slice(5));
  if (r.startsWith('@type:')) return q.klass === r.slice(6);
  return q.name === r;
}

export interface Selection<Q extends QubeInfo> {
  selected: Q[];
  /** include/exclude entries that matched no qube (likely typos). */
  unmatched: string[];
}

/**
 * Qubes the profile backs up, in Qubes' order. `qubes` come in the order
 * Qubes lists its qubes (dom0, then by name: QubesApp.allVms()). With
 * include null: those whose include_in_backups is true, in that order;
 * otherwise those `include` matches, in the order of the Python set Qubes
 * collects them into (by qid: the order its summary shows and its archive
 * holds); then less those `exclude` matches.
 */
export function selectQubes<Q extends QubeInfo>(profile: Pick<BackupProfile, 'include' | 'exclude'>, qubes: readonly Q[]): Selection<Q> {
  const included =
    profile.include === null
      ? qubes.filter((q) => q.includeInBackupsDefault)
      : pySetOrder(
          qubes.filter((q) => profile.include!.some((ref) => matches(q, ref))),
          (q) => q.qid,
        );
  const selected = included.filter((q) => !profile.exclude.some((ref) => matches(q, ref)));
  const unmatched = [...(profile.include ?? []), ...profile.exclude].filter((ref) => !qubes.some((q) => matches(q, ref)));
  return { selected, unmatched };
}

export class MissingPassphraseError extends Error {
  constructor() {
    super('Invalid backup profile - you need to specify passphrase_text or passphrase_vm');
    this.name = 'MissingPassphraseError';
  }
}

export class PassphraseCancelledError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'PassphraseCancelledError';
  }
}

/** The profile's passphrase: passphrase_text, or what the passphrase_vm
 * answers to qubes.BackupPassphrase+<profile> (surrounding whitespace
 * removed, as an `echo` answer has a newline; an empty answer cancels). */
export async function resolvePassphrase(
  profile: BackupProfile,
  profileName: string,
  callService: (vm: string, service: string) => Promise<Buffer>,
): Promise<Buffer> {
  if (profile.passphraseText !== undefined) return Buffer.from(profile.passphraseText, 'utf8');
  if (profile.passphraseVm === undefined) throw new MissingPassphraseError();
  const vm = profile.passphraseVm;
  let answer: Buffer;
  try {
    answer = await callService(vm, `qubes.BackupPassphrase+${profileName}`);
  } catch (err) {
    throw new Error(`Failed to retrieve passphrase from '${vm}' VM: ${(err as Error).message}`);
  }
  const text = answer.toString('utf8').replace(/^[\s]+|[\s]+$/g, '');
  if (text.includes('\n')) throw new Error('Passphrase must not contain newline character');
  if (text === '') throw new PassphraseCancelledError(`empty passphrase from '${vm}': backup cancelled`);
  return Buffer.from(text, 'utf8');
}
